// C side of the Go callbacks: librstar calls these, they call the exported Go functions with the
// cgo.Handle that was passed as user_data.
#include "_cgo_export.h"

bool rstar_go_text(const char *text, size_t len, void *user) {
    return goTextCallback((char *)text, len, *(uintptr_t *)user);
}

bool rstar_go_progress(const rstar_solver_progress *p, void *user) {
    return goSolverProgress((rstar_solver_progress *)p, *(uintptr_t *)user);
}

void rstar_go_code_runner(const char *code, size_t len, double timeout_s,
                          rstar_code_result *result, void *user) {
    goCodeRunner((char *)code, len, timeout_s, result, *(uintptr_t *)user);
}

bool rstar_go_evolve(const rstar_evolve_event *e, void *user) {
    return goEvolveEvent((rstar_evolve_event *)e, *(uintptr_t *)user);
}
