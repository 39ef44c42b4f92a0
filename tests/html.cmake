# The HTML report (tests/html.sh): 500 tests on 4 systems rendered by
# headless Chromium; timeline and test rows counted in the DOM.
atx_script_test(html)
