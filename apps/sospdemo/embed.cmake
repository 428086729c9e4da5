# Turns a file into a C source holding its bytes:
#   cmake -DINPUT=in -DOUTPUT=out.c -DSYMBOL=name -P embed.cmake
# gives `const unsigned char name[]` (NUL-terminated) and `const unsigned long name_len`.
file(READ ${INPUT} HEX HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," BYTES "${HEX}")
string(LENGTH "${HEX}" HEX_LEN)
math(EXPR LEN "${HEX_LEN} / 2")
file(WRITE ${OUTPUT} "/* Generated from ${INPUT} by embed.cmake; do not edit. */\n"
  "const unsigned char ${SYMBOL}[] = {${BYTES}0x00};\n"
  "const unsigned long ${SYMBOL}_len = ${LEN};\n")
