# ctrf: a CTRF JSON report (json-c only, linked to every plugin).
atx_add_plugin(ctrf aggregators/ctrf/ctrf.c)
