# Turn page.html into a C array (cmake -DIN=page.html -DOUT=page.c -P embed.cmake):
# the page stays an ordinary file to edit and view, and no string literal
# limit or escaping gets in the way.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR n "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n"
       bytes "${bytes}")
file(WRITE "${OUT}.tmp"
     "/* Generated from aggregators/html/page.html by embed.cmake. */\n"
     "#include <stddef.h>\n"
     "extern const char atx_html_page[];\n"
     "extern const size_t atx_html_page_size;\n"
     "const char atx_html_page[] = {\n${bytes}0x00 };\n"
     "const size_t atx_html_page_size = ${n};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
