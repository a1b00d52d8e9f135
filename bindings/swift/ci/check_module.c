/* Module-map check (.ci/bindings.sh): clang -fmodules imports CRStar as Swift would, and the
 * program calls through it. Not part of the Swift build (system library targets have no sources). */
#pragma clang module import CRStar
#include <stdio.h>

int main(void) {
    bool eq = false;
    if (rstar_abi_version() != RSTAR_ABI_VERSION) return 1;
    if (rstar_grade("\\frac{1}{2}", "0.5", &eq) != RSTAR_STATUS_OK || !eq) return 1;
    printf("CRStar module: librstar %s, ABI %u\n", rstar_version(), rstar_abi_version());
    return 0;
}
