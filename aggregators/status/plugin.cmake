# status: each result POSTed to status servers, one libcurl sender thread per endpoint.
atx_add_plugin(status aggregators/status/status.c)
target_link_libraries(atx-plugin-status PRIVATE PkgConfig::CURL)
