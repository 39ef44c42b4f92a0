# The one process primitive and spawning on this host (containment included).
atx_unit_test(process)
