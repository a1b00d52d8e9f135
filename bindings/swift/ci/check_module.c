/* Module-map check (.ci/bindings.sh): clang -fmodules imports CRStar as Swift would, and the
 * program calls through it. Not part of the Swift build (system library targets have no sources). */
#pragma clang module import CRStar
#include <stdio.h>

int main(void) {
    bool eq = false;
    if (rstar_abi_version() != RSTAR_ABI_VERSION) return 1;
    if (rstar_grade("\\frac{1}{2}", "0.5", &eq) != RSTAR_STATUS_OK || !eq) return 1;
    /* The v4 calls and structs RStar.swift wraps are visible through the module. */
    rstar_evolve_params p = {.struct_size = sizeof p};
    rstar_evolve_default_params(&p);
    if (p.struct_size != sizeof p || p.rounds != 2) return 1;
    if (rstar_solver_run_problems(NULL, "[]", NULL) != RSTAR_STATUS_INVALID_ARGUMENT) return 1;
    rstar_evolve_callback cb = NULL;
    (void)cb;
    printf("CRStar module: librstar %s, ABI %u\n", rstar_version(), rstar_abi_version());
    return 0;
}
