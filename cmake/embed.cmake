# Turn a file into a C array (cmake -DIN=page.html -DOUT=page.c -DNAME=sym
# -P embed.cmake): the file stays an ordinary file to edit and view, and no
# string literal limit or escaping gets in the way. It defines NAME (the
# bytes and a NUL) and NAME_size.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR n "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n"
       bytes "${bytes}")
file(RELATIVE_PATH rel "${CMAKE_CURRENT_LIST_DIR}/.." "${IN}")
file(WRITE "${OUT}.tmp"
     "/* Generated from ${rel} by cmake/embed.cmake. */\n"
     "#include <stddef.h>\n"
     "extern const char ${NAME}[];\n"
     "extern const size_t ${NAME}_size;\n"
     "const char ${NAME}[] = {\n${bytes}0x00 };\n"
     "const size_t ${NAME}_size = ${n};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
