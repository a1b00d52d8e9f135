/* C ABI misuse and v3 features, built with -fsanitize=address,undefined (tests/c_abi_misuse.rs,
 * .ci/bindings.sh). Usage: misuse_test POLICY_DIR PPM_DIR WORK_DIR
 * Every misuse must come back as a status code (no crash, no sanitizer report, no leak):
 * NULL handles and strings, wrong struct_size, a second free of strings, id arrays and handles,
 * cancel after a finished call and from another thread during a solve, two threads on one
 * solver, default_params into an older header's smaller struct. Then the v3 calls:
 * rstar_grade, rstar_extract_answer, rstar_exec, a solver with a caller's code runner (python3
 * through popen) solving the README question, and annotation mode (trees JSONL, resumed). Prints `misuse: ok` at the end. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "rstar.h"

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "CHECK failed at line %d: %s (last error: %s)\n", __LINE__, \
                    #cond, rstar_last_error_message());                              \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define QUESTION "A jacket costs $160. It is on sale for 25% off. What is the sale price in dollars?"
/* Greedy: deterministic and quick on the tiny model. */
#define GREEDY "{\"search\": \"greedy\"}"

static const char *g_policy, *g_ppm, *g_work;

static int contains(const char *s, const char *what) { return s && strstr(s, what) != NULL; }

static void null_arguments(void) {
    char *json = (char *)1;
    bool eq = true;
    rstar_model *m = (rstar_model *)1;
    rstar_solver *s = (rstar_solver *)1;
    CHECK(rstar_model_load(NULL, &m) == RSTAR_STATUS_INVALID_ARGUMENT && m == NULL);
    CHECK(contains(rstar_last_error_message(), "path"));
    CHECK(rstar_model_load(g_policy, NULL) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_model_generate_text(NULL, "x", false, NULL, NULL, NULL, &json) ==
          RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_solver_solve(NULL, "q", &json) == RSTAR_STATUS_INVALID_ARGUMENT && json == NULL);
    CHECK(rstar_solver_run_dataset(NULL, "x", 0, NULL, NULL, NULL, NULL) ==
          RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_solver_new_with_params(NULL, NULL) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_engine_add(NULL, NULL, 0, NULL) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_trainer_step(NULL, 1, NULL, NULL) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_grade(NULL, "1", &eq) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_grade("1", NULL, &eq) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_grade("1", "1", NULL) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_extract_answer(NULL, &json) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_exec(NULL, NULL, &json) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_code_result_set(NULL, true, "x", NULL) == RSTAR_STATUS_INVALID_ARGUMENT);
    /* Frees and cancels of NULL are no-ops. */
    CHECK(rstar_string_free(NULL) == RSTAR_STATUS_OK);
    CHECK(rstar_ids_free(NULL, 0) == RSTAR_STATUS_OK);
    CHECK(rstar_solver_free(NULL) == RSTAR_STATUS_OK);
    CHECK(rstar_model_free(NULL) == RSTAR_STATUS_OK);
    rstar_solver_cancel(NULL);
    rstar_trainer_cancel(NULL);
    (void)s;
    puts("null arguments: ok");
}

static void bad_struct_size(void) {
    rstar_solver_params p;
    rstar_solver *s = (rstar_solver *)1;
    uint32_t bad[] = {0, 3, 12, 0xFFFFFFFFu, (uint32_t)sizeof p + 4};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rstar_solver_default_params(&p);
        p.struct_size = bad[i];
        p.policy = g_policy;
        CHECK(rstar_solver_new_with_params(&p, &s) == RSTAR_STATUS_INVALID_ARGUMENT && s == NULL);
        CHECK(contains(rstar_last_error_message(), "struct_size"));
    }
    rstar_exec_params e;
    rstar_exec_default_params(&e);
    e.struct_size = 2;
    char *json = NULL;
    CHECK(rstar_exec("print(1)", &e, &json) == RSTAR_STATUS_INVALID_ARGUMENT && json == NULL);
    /* Out-of-range fields name themselves. */
    rstar_solver_default_params(&p);
    p.policy = g_policy;
    p.mode = 7;
    CHECK(rstar_solver_new_with_params(&p, &s) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(contains(rstar_last_error_message(), "params.mode"));
    rstar_solver_default_params(&p);
    p.policy = g_policy;
    p.threads = 100000;
    CHECK(rstar_solver_new_with_params(&p, &s) == RSTAR_STATUS_INVALID_ARGUMENT);
    rstar_solver_default_params(&p);
    p.mode = RSTAR_SOLVER_MODE_ANNOTATION; /* annotation needs an explicit policy */
    CHECK(rstar_solver_new_with_params(&p, &s) == RSTAR_STATUS_INVALID_ARGUMENT);
    puts("struct_size: ok");
}

/* The structs of the v3 header (before kv_dtype and quant_load), as a caller compiled against
 * it has them. */
typedef struct {
    uint32_t struct_size, precision, threads;
    const char *device;
} model_params_v3;
typedef struct {
    uint32_t struct_size;
    const char *policy, *ppm, *config, *device;
    uint32_t precision, threads, executor_workers;
    double step_timeout_s;
    uint64_t step_memory_bytes;
    uint32_t mode, weak_sandbox;
    rstar_code_runner code_runner;
    void *code_runner_user_data;
} solver_params_v3;

/* `size` bytes ending where an inaccessible page begins: a write past them is a SEGV (which
 * ASan reports) even from the library, which is not instrumented. Free with unguard(p, size). */
static void *guarded(size_t size) {
    long page = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    CHECK(m != MAP_FAILED && size <= (size_t)page);
    CHECK(mprotect(m + page, (size_t)page, PROT_NONE) == 0);
    return m + page - size;
}

static void unguard(void *p, size_t size) {
    long page = sysconf(_SC_PAGESIZE);
    munmap((char *)p + size - page, 2 * (size_t)page);
}

/* A caller compiled against an older header has a smaller struct: default_params must fill only
 * its struct_size bytes. The structs sit right before a guard page, so writing the current
 * struct crashes. */
static void older_structs(void) {
    CHECK(sizeof(model_params_v3) == offsetof(rstar_model_params, kv_dtype));
    model_params_v3 *mp = guarded(sizeof *mp);
    mp->struct_size = sizeof *mp;
    rstar_model_default_params((rstar_model_params *)mp);
    CHECK(mp->struct_size == sizeof *mp && mp->precision == 0 && mp->threads == 0);
    CHECK(mp->device == NULL);
    mp->threads = 1;
    rstar_model *m = NULL; /* read as sizeof *mp bytes: kv_dtype and quant_load keep defaults */
    CHECK(rstar_model_load_with_params(g_policy, (rstar_model_params *)mp, &m) == RSTAR_STATUS_OK);
    CHECK(rstar_model_free(m) == RSTAR_STATUS_OK);
    unguard(mp, sizeof *mp);

    CHECK(sizeof(solver_params_v3) == offsetof(rstar_solver_params, kv_dtype));
    solver_params_v3 *sp = guarded(sizeof *sp);
    sp->struct_size = sizeof *sp;
    rstar_solver_default_params((rstar_solver_params *)sp);
    CHECK(sp->struct_size == sizeof *sp && sp->mode == RSTAR_SOLVER_MODE_INFERENCE);
    CHECK(sp->policy == NULL && sp->code_runner == NULL && sp->code_runner_user_data == NULL);
    sp->policy = g_policy;
    sp->ppm = g_ppm;
    sp->config = GREEDY;
    rstar_solver *s = NULL;
    CHECK(rstar_solver_new_with_params((rstar_solver_params *)sp, &s) == RSTAR_STATUS_OK);
    CHECK(rstar_solver_free(s) == RSTAR_STATUS_OK);
    unguard(sp, sizeof *sp);

    /* A struct_size that is no earlier sizeof (0, garbage, the current one) gets the whole
     * current struct. */
    uint32_t others[] = {0, 7, 0xFFFFFFFFu, (uint32_t)sizeof(rstar_solver_params)};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        rstar_solver_params full;
        memset(&full, 0xAB, sizeof full);
        full.struct_size = others[i];
        rstar_solver_default_params(&full);
        CHECK(full.struct_size == sizeof full && full.kv_dtype == 0 && full.quant_load == 0);
    }
    /* Every params struct, filled at its own size, keeps it. */
    rstar_generate_params g = {.struct_size = sizeof g};
    rstar_generate_default_params(&g);
    CHECK(g.struct_size == sizeof g && g.max_new_tokens > 0 && g.top_p == 1.0f);
    rstar_engine_params e = {.struct_size = sizeof e};
    rstar_engine_default_params(&e);
    CHECK(e.struct_size == sizeof e && e.block_size > 0);
    rstar_exec_params x = {.struct_size = sizeof x};
    rstar_exec_default_params(&x);
    CHECK(x.struct_size == sizeof x && x.timeout_s > 0);
    rstar_evolve_params v = {.struct_size = sizeof v};
    rstar_evolve_default_params(&v);
    CHECK(v.struct_size == sizeof v && v.rounds == 2);
    puts("older structs: ok");
}

static void second_free(void) {
    char *a = NULL;
    CHECK(rstar_extract_answer("so the answer is \\boxed{42}.", &a) == RSTAR_STATUS_OK);
    CHECK(a && strcmp(a, "42") == 0);
    CHECK(rstar_string_free(a) == RSTAR_STATUS_OK);
    CHECK(rstar_string_free(a) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(contains(rstar_last_error_message(), "not a live string"));
    char not_ours[] = "mine";
    CHECK(rstar_string_free(not_ours) == RSTAR_STATUS_INVALID_ARGUMENT);

    rstar_model *m = NULL;
    CHECK(rstar_model_load(g_policy, &m) == RSTAR_STATUS_OK);
    uint32_t *ids = NULL;
    size_t n = 0;
    CHECK(rstar_model_tokenize(m, "2 + 2", false, &ids, &n) == RSTAR_STATUS_OK && n > 0);
    CHECK(rstar_ids_free(ids, n + 1) == RSTAR_STATUS_INVALID_ARGUMENT); /* wrong length: kept */
    CHECK(rstar_ids_free(ids, n) == RSTAR_STATUS_OK);
    CHECK(rstar_ids_free(ids, n) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_model_free(m) == RSTAR_STATUS_OK);
    CHECK(rstar_model_free(m) == RSTAR_STATUS_INVALID_ARGUMENT);
    puts("second free: ok");
}

static rstar_solver *new_solver(const char *config, rstar_code_runner runner, void *user) {
    rstar_solver_params p;
    rstar_solver_default_params(&p);
    p.policy = g_policy;
    p.ppm = g_ppm;
    p.config = config;
    p.executor_workers = 2;
    p.code_runner = runner;
    p.code_runner_user_data = user;
    rstar_solver *s = NULL;
    CHECK(rstar_solver_new_with_params(&p, &s) == RSTAR_STATUS_OK && s != NULL);
    return s;
}

static char *solve(rstar_solver *s, rstar_status want) {
    char *json = NULL;
    rstar_status st = rstar_solver_solve(s, QUESTION, &json);
    if (st != want) fprintf(stderr, "solve: status %d, want %d\n", (int)st, (int)want);
    CHECK(st == want);
    CHECK((json != NULL) == (want == RSTAR_STATUS_OK));
    return json;
}

struct shared {
    rstar_solver *solver;
    volatile int done;
    char *json;
    rstar_status status;
};

static void *solve_thread(void *arg) {
    struct shared *sh = (struct shared *)arg;
    sh->status = rstar_solver_solve(sh->solver, QUESTION, &sh->json);
    __atomic_store_n(&sh->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* The top-level "answer" value of a solve result (a string or null) into buf. */
static int answer_of(const char *json, char *buf, size_t n) {
    const char *p = json ? strstr(json, "\"answer\":") : NULL;
    if (!p) return 0;
    p += strlen("\"answer\":");
    size_t len = strcspn(p, ",");
    if (len >= n) return 0;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return 1;
}

static void threads_and_cancel(void) {
    rstar_solver *s = new_solver(GREEDY, NULL, NULL);
    /* Two threads on one solver: serialised, both answer, the same answer. */
    struct shared a = {s, 0, NULL, RSTAR_STATUS_INTERNAL}, b = a;
    pthread_t ta, tb;
    CHECK(pthread_create(&ta, NULL, solve_thread, &a) == 0);
    CHECK(pthread_create(&tb, NULL, solve_thread, &b) == 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.status == RSTAR_STATUS_OK && b.status == RSTAR_STATUS_OK);
    char ans_a[256], ans_b[256];
    CHECK(answer_of(a.json, ans_a, sizeof ans_a) && answer_of(b.json, ans_b, sizeof ans_b));
    CHECK(strcmp(ans_a, ans_b) == 0); /* greedy: the same answer, whatever the order */
    rstar_string_free(a.json);
    rstar_string_free(b.json);

    /* Cancel from another thread during a solve: the solve returns CANCELLED. */
    struct shared c = {s, 0, NULL, RSTAR_STATUS_INTERNAL};
    pthread_t tc;
    CHECK(pthread_create(&tc, NULL, solve_thread, &c) == 0);
    struct timespec ms = {0, 1000000};
    while (!__atomic_load_n(&c.done, __ATOMIC_SEQ_CST)) {
        rstar_solver_cancel(s);
        nanosleep(&ms, NULL);
    }
    pthread_join(tc, NULL);
    CHECK(c.status == RSTAR_STATUS_CANCELLED && c.json == NULL);
    /* The loop's last cancel may land after the cancelled call returned and before `done` was
       seen: then it cancels the next call (documented). Drain it: OK or CANCELLED. */
    char *drained = NULL;
    rstar_status st = rstar_solver_solve(s, QUESTION, &drained);
    CHECK(st == RSTAR_STATUS_OK || st == RSTAR_STATUS_CANCELLED);
    CHECK((drained != NULL) == (st == RSTAR_STATUS_OK));
    rstar_string_free(drained);

    /* Cancel after a finished call cancels the next call (documented), then the solver works. */
    rstar_string_free(solve(s, RSTAR_STATUS_OK));
    rstar_solver_cancel(s);
    solve(s, RSTAR_STATUS_CANCELLED);
    char *json = solve(s, RSTAR_STATUS_OK);
    CHECK(contains(json, "\"answer\""));
    rstar_string_free(json);
    CHECK(rstar_solver_free(s) == RSTAR_STATUS_OK);
    CHECK(rstar_solver_free(s) == RSTAR_STATUS_INVALID_ARGUMENT);
    puts("threads and cancel: ok");
}

struct runner_state {
    int calls;
    char path[4096];
};

/* A caller's code runner: python3 on a temp file, as an app without the sandbox would. */
static void run_python(const char *code, size_t len, double timeout_s, rstar_code_result *result,
                       void *user_data) {
    struct runner_state *st = (struct runner_state *)user_data;
    st->calls++;
    FILE *f = fopen(st->path, "w");
    if (!f) return; /* no result: the step fails */
    fwrite(code, 1, len, f);
    fclose(f);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "timeout %.0f python3 %s 2>&1", timeout_s + 1.0, st->path);
    FILE *p = popen(cmd, "r");
    if (!p) return;
    static char out[65536];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int rc = pclose(p);
    rstar_code_result_set(result, rc == 0, out, rc == 0 ? NULL : out);
}

static void v3_calls(void) {
    bool eq = false;
    CHECK(rstar_grade("\\frac{1}{2}", "0.5", &eq) == RSTAR_STATUS_OK && eq);
    CHECK(rstar_grade("120", "$120", &eq) == RSTAR_STATUS_OK && eq);
    CHECK(rstar_grade("121", "120", &eq) == RSTAR_STATUS_OK && !eq);
    char *a = (char *)1;
    CHECK(rstar_extract_answer("no answer here", &a) == RSTAR_STATUS_OK && a == NULL);

    rstar_exec_params e;
    rstar_exec_default_params(&e);
    e.timeout_s = 5;
    char *json = NULL;
    rstar_status st = rstar_exec("print(6 * 7)", &e, &json);
    if (st == RSTAR_STATUS_EXEC) {
        /* Strict sandbox refusing (a layer missing on this machine): says which. */
        CHECK(contains(rstar_last_error_message(), "sandbox") ||
              contains(rstar_last_error_message(), "ython"));
        e.weak_sandbox = 1;
        st = rstar_exec("print(6 * 7)", &e, &json);
    }
    CHECK(st == RSTAR_STATUS_OK && contains(json, "\"output\":\"42\\n\"") &&
          contains(json, "\"ok\":true") && contains(json, "\"sandbox\""));
    rstar_string_free(json);

    struct runner_state rs = {0, ""};
    snprintf(rs.path, sizeof rs.path, "%s/runner_step.py", g_work);
    rstar_solver *s = new_solver(GREEDY, run_python, &rs);
    json = solve(s, RSTAR_STATUS_OK);
    CHECK(rs.calls > 0);
    printf("code runner: %d calls, %s\n", rs.calls, json);
    rstar_string_free(json);
    rstar_solver_free(s);
    puts("v3 calls: ok");
}

static int count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

/* `rstar_solver_run_problems` (ABI 4): bad arguments and problems are typed errors; problem 1
 * of the file alone gives the very line the dataset run wrote for it (the second line). */
static void run_problems(rstar_solver *s, const char *trees) {
    char *lines = (char *)1;
    CHECK(rstar_solver_run_problems(NULL, "[]", &lines) == RSTAR_STATUS_INVALID_ARGUMENT &&
          lines == NULL);
    CHECK(rstar_solver_run_problems(s, NULL, &lines) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_solver_run_problems(s, "[]", NULL) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_solver_run_problems(s, "{\"index\": 0}", &lines) == RSTAR_STATUS_FORMAT);
    CHECK(rstar_solver_run_problems(s, "[{\"problem\": {}}]", &lines) == RSTAR_STATUS_FORMAT &&
          contains(rstar_last_error_message(), "item 0"));
    CHECK(rstar_solver_run_problems(s, "[{\"index\": 3, \"problem\": {\"question\": \"q\"}}]",
                                    &lines) == RSTAR_STATUS_FORMAT &&
          contains(rstar_last_error_message(), "problem 3"));
    CHECK(rstar_solver_run_problems(s, "[]", &lines) == RSTAR_STATUS_OK && lines && !*lines);
    rstar_string_free(lines);
    const char *one = "[{\"index\": 1, \"problem\": {\"question\": \"What is 2 + 2?\", "
                      "\"answer\": \"4\"}}]";
    CHECK(rstar_solver_run_problems(s, one, &lines) == RSTAR_STATUS_OK);
    char want[1 << 16] = {0};
    FILE *f = fopen(trees, "r");
    CHECK(f != NULL && fgets(want, sizeof want, f) && fgets(want, sizeof want, f));
    fclose(f);
    CHECK(strcmp(lines, want) == 0);
    rstar_string_free(lines);
    puts("run_problems: ok");
}

static void annotation(void) {
    char data[4096], trees[4096];
    snprintf(data, sizeof data, "%s/problems.jsonl", g_work);
    snprintf(trees, sizeof trees, "%s/trees.jsonl", g_work);
    FILE *f = fopen(data, "w");
    CHECK(f != NULL);
    fputs("{\"question\": \"What is 6 times 7?\", \"answer\": \"42\"}\n"
          "{\"question\": \"What is 2 + 2?\", \"answer\": \"4\"}\n",
          f);
    fclose(f);
    remove(trees);
    rstar_solver_params p;
    rstar_solver_default_params(&p);
    p.policy = g_policy;
    p.ppm = g_ppm;
    p.config = "{\"rollouts\": 2, \"width\": 2, \"max_depth\": 3}";
    p.mode = RSTAR_SOLVER_MODE_ANNOTATION;
    p.executor_workers = 2;
    rstar_solver *s = NULL;
    CHECK(rstar_solver_new_with_params(&p, &s) == RSTAR_STATUS_OK);
    char *sum = NULL;
    CHECK(rstar_solver_run_dataset(s, data, 0, NULL, NULL, NULL, &sum) ==
          RSTAR_STATUS_INVALID_ARGUMENT); /* annotation writes trees: a path is required */
    CHECK(rstar_solver_run_dataset(s, data, 0, trees, NULL, NULL, &sum) == RSTAR_STATUS_OK);
    CHECK(count_lines(trees) == 2 && contains(sum, "\"problems\":2"));
    printf("annotation: %s\n", sum);
    rstar_string_free(sum);
    /* Resumable: a rerun skips what the file holds. */
    CHECK(rstar_solver_run_dataset(s, data, 0, trees, NULL, NULL, &sum) == RSTAR_STATUS_OK);
    CHECK(count_lines(trees) == 2 && contains(sum, "\"skipped\":2"));
    rstar_string_free(sum);
    run_problems(s, trees);
    rstar_solver_free(s);
    puts("annotation: ok");
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s POLICY_DIR PPM_DIR WORK_DIR\n", argv[0]);
        return 2;
    }
    g_policy = argv[1];
    g_ppm = argv[2];
    g_work = argv[3];
    CHECK(rstar_abi_version() == RSTAR_ABI_VERSION && RSTAR_ABI_VERSION >= 3);
    null_arguments();
    bad_struct_size();
    older_structs();
    second_free();
    threads_and_cancel();
    v3_calls();
    annotation();
    puts("misuse: ok");
    return 0;
}
