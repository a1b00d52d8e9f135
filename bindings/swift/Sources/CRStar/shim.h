/* The C API of librstar for Swift; the include path comes from pkg-config (rstar.pc). */
#include <rstar.h>
