# The command line's front door (issue 13): help, suggestions, reports.
atx_script_test(cli_help)
