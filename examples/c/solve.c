/* Solves one question with librstar's default model through the C ABI.
 * Build and run (from the repository root):
 *   cargo build --release
 *   cc -std=c99 -Wall examples/c/solve.c -Iinclude -Ltarget/release -lrstar -Wl,-rpath,target/release -o solve
 *   ./solve 'What is 15% of 80?'
 */
#include <stdio.h>

#include "rstar.h"

int main(int argc, char **argv) {
    const char *question = argc > 1 ? argv[1] : "What is 15% of 80?";
    struct rstar_solver *solver = NULL;
    /* NULL policy: the default model, with its PPM and search settings. */
    if (rstar_solver_new(NULL, NULL, NULL, &solver) != RSTAR_STATUS_OK) {
        fprintf(stderr, "error: %s\n", rstar_last_error_message());
        return 1;
    }
    char *result_json = NULL;
    enum rstar_status st = rstar_solver_solve(solver, question, &result_json);
    if (st != RSTAR_STATUS_OK) {
        fprintf(stderr, "error: %s\n", rstar_last_error_message());
        rstar_solver_free(solver);
        return 1;
    }
    puts(result_json); /* {"question", "answer", "trajectories", "stats", ...} */
    rstar_string_free(result_json);
    rstar_solver_free(solver);
    return 0;
}
