# html: one self-contained HTML report. The page (CSS and JavaScript) is
# page.html, embedded into the plugin as a C array at build time.
set(_atx_html_page ${PROJECT_BINARY_DIR}/aggregators/html/page.c)
add_custom_command(
  OUTPUT ${_atx_html_page}
  COMMAND ${CMAKE_COMMAND} -DIN=${CMAKE_CURRENT_LIST_DIR}/page.html
          -DOUT=${_atx_html_page} -DNAME=atx_html_page -P ${PROJECT_SOURCE_DIR}/cmake/embed.cmake
  DEPENDS ${CMAKE_CURRENT_LIST_DIR}/page.html ${PROJECT_SOURCE_DIR}/cmake/embed.cmake
  COMMENT "Embedding the HTML report page"
  VERBATIM)
atx_add_plugin(html aggregators/html/html.c ${_atx_html_page})
