/* C99 consumer of include/rstar.h: built with -std=c99 -Wall -Wextra -Werror and run by tests/c_abi.rs.
 * Usage: api_test MODEL_DIR ID,ID,... MAX_NEW_TOKENS PPM_DIR [DATA_JSON [EVOLVE_WORKDIR]]
 * With DATA_JSON (a problem file) the solver is exercised too: it prints `solve:<json>` and
 * `summary:<json>`, or `solver: skipped` when the Python executor is unavailable. With
 * EVOLVE_WORKDIR, a miniature self-evolution round runs there (cancelled once, then resumed): it
 * prints `evolve:<rounds json>` and `evolve_rerun:<event counts>`, or `evolve: skipped`.
 * Checks statuses, error messages, ownership rules, streaming and cancellation; prints the result JSON
 * of a greedy generation on the last line for the Rust side to compare with HF's golden ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rstar.h"

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "CHECK failed at line %d: %s (last error: %s)\n", \
                    __LINE__, #cond, rstar_last_error_message());         \
            return 1;                                                     \
        }                                                                 \
    } while (0)

struct collect {
    char buf[65536];
    size_t len;
    int calls;
    int cancel_after;
};

static bool on_text(const char *text, size_t len, void *user_data) {
    struct collect *c = (struct collect *)user_data;
    if (strlen(text) != len || c->len + len >= sizeof c->buf) return false;
    memcpy(c->buf + c->len, text, len);
    c->len += len;
    c->buf[c->len] = '\0';
    c->calls++;
    return c->cancel_after == 0 || c->calls < c->cancel_after;
}

struct progress_count {
    int calls;
    int cancel_at;
    uint64_t last_done;
    uint64_t total;
};

static bool on_progress(const rstar_solver_progress *p, void *user_data) {
    struct progress_count *c = (struct progress_count *)user_data;
    if (p->struct_size < sizeof *p || p->done > p->total) return false;
    c->calls++;
    c->last_done = p->done;
    c->total = p->total;
    return c->cancel_at == 0 || c->calls < c->cancel_at;
}

static int solver_checks(const char *model_dir, const char *ppm_dir, const char *data) {
    rstar_solver *solver = NULL;
    char *json = NULL;
    struct progress_count pc;
    const char *config = "{\"search\": \"best-of-n\", \"best_of\": 2, \"max_depth\": 2, "
                         "\"max_step_tokens\": 4, \"exec_timeout_s\": 5.0}";
    rstar_status st;

    /* Bad configurations are typed errors naming the key; nothing is created. */
    CHECK(rstar_solver_new(model_dir, NULL, "{\"rolouts\": 3}", &solver) == RSTAR_STATUS_FORMAT);
    CHECK(solver == NULL && strstr(rstar_last_error_message(), "rolouts") != NULL);
    CHECK(rstar_solver_new(model_dir, NULL, "width = 0", &solver) == RSTAR_STATUS_FORMAT);
    CHECK(rstar_solver_new("/nonexistent/policy", NULL, NULL, &solver) == RSTAR_STATUS_IO);
    CHECK(rstar_solver_new(model_dir, NULL, NULL, NULL) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_solver_solve(NULL, "q", &json) == RSTAR_STATUS_INVALID_ARGUMENT && json == NULL);

    st = rstar_solver_new(model_dir, ppm_dir, config, &solver);
    if (st == RSTAR_STATUS_EXEC) {
        printf("solver: skipped (%s)\n", rstar_last_error_message());
        return 0;
    }
    CHECK(st == RSTAR_STATUS_OK && solver != NULL);
    CHECK(rstar_solver_solve(solver, NULL, &json) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_solver_solve(solver, "What is 6 times 7?", &json) == RSTAR_STATUS_OK);
    CHECK(json != NULL && strstr(json, "\"trajectories\"") != NULL);
    printf("solve:%s\n", json);
    rstar_string_free(json);
    json = NULL;

    /* Cancelled from the callback: a status, no summary. */
    memset(&pc, 0, sizeof pc);
    pc.cancel_at = 1;
    CHECK(rstar_solver_run_dataset(solver, data, 0, NULL, on_progress, &pc, &json) == RSTAR_STATUS_CANCELLED);
    CHECK(json == NULL && pc.calls == 1);
    /* Cancelled beforehand from "another thread": the next call stops. */
    rstar_solver_cancel(solver);
    CHECK(rstar_solver_run_dataset(solver, data, 0, NULL, NULL, NULL, NULL) == RSTAR_STATUS_CANCELLED);
    CHECK(rstar_solver_run_dataset(solver, "/nonexistent/data.json", 0, NULL, NULL, NULL, &json) == RSTAR_STATUS_IO);

    memset(&pc, 0, sizeof pc);
    CHECK(rstar_solver_run_dataset(solver, data, 2, NULL, on_progress, &pc, &json) == RSTAR_STATUS_OK);
    CHECK(json != NULL && pc.calls > 0 && pc.last_done == 2 && pc.total == 2);
    printf("summary:%s\n", json);
    rstar_string_free(json);
    rstar_solver_free(solver);
    rstar_solver_free(NULL);
    rstar_solver_cancel(NULL);

    /* A NULL policy is the self-evolved default model, with its PPM and search settings. */
    solver = NULL;
    CHECK(rstar_solver_new(NULL, NULL, NULL, &solver) == RSTAR_STATUS_OK && solver != NULL);
    CHECK(rstar_solver_solve(solver,
                             "A jacket costs $160. It is on sale for 25% off. What is the sale "
                             "price in dollars?",
                             &json) == RSTAR_STATUS_OK);
    printf("default_solve:%s\n", json);
    rstar_string_free(json);
    rstar_solver_free(solver);
    return 0;
}

struct evolve_count {
    int events[4];
    int skipped;
    int cancel_at_train;
    int bad;
};

static bool on_evolve(const rstar_evolve_event *e, void *user_data) {
    struct evolve_count *c = (struct evolve_count *)user_data;
    if (e->struct_size < sizeof *e || e->kind > RSTAR_EVOLVE_EVENT_ROUND ||
        e->stage > RSTAR_EVOLVE_STAGE_EVAL) {
        c->bad++;
        return false;
    }
    c->events[e->kind]++;
    if (e->kind == RSTAR_EVOLVE_EVENT_STAGE) c->skipped += (int)e->skipped;
    if (e->kind == RSTAR_EVOLVE_EVENT_TRAIN &&
        (e->stage != RSTAR_EVOLVE_STAGE_SFT && e->stage != RSTAR_EVOLVE_STAGE_PPM))
        c->bad++;
    if (e->kind == RSTAR_EVOLVE_EVENT_ROUND && (e->round_json == NULL || e->round_json[0] != '{'))
        c->bad++;
    return !(e->kind == RSTAR_EVOLVE_EVENT_TRAIN && c->cancel_at_train);
}

/* rstar_evolve_run: bad params are typed errors; a round cancelled from the callback during its
 * first training step, then resumed to the end; a rerun skips every stage. */
static int evolve_checks(const char *model_dir, const char *data, const char *workdir) {
    rstar_evolve_params p;
    struct evolve_count c;
    char *json = NULL;
    rstar_status st;
    const char *config =
        "{\"mcts\": {\"rollouts\": 2, \"width\": 2, \"max_depth\": 2, \"max_step_tokens\": 6, "
        "\"errors_threshold\": 2}, \"round1_rollouts\": 2, \"batch\": 2, "
        "\"sft\": {\"max_steps\": 1, \"batch_size\": 1, \"seq_len\": 1024, \"lr\": 0.0001}, "
        "\"ppm\": {\"max_steps\": 1, \"batch_size\": 1, \"seq_len\": 1024, \"lr\": 0.0001}, "
        "\"holdout\": 0.34, \"eval_ppm_rollouts\": 1}";

    rstar_evolve_default_params(&p);
    CHECK(p.struct_size == sizeof p && p.rounds == 2);
    CHECK(rstar_evolve_run(NULL, NULL, NULL, &json) == RSTAR_STATUS_INVALID_ARGUMENT && json == NULL);
    p.data = data;
    p.workdir = workdir;
    CHECK(rstar_evolve_run(&p, NULL, NULL, &json) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(rstar_last_error_message(), "policy") != NULL);
    p.policy = model_dir;
    p.config = "{\"bacth\": 2}";
    CHECK(rstar_evolve_run(&p, NULL, NULL, &json) == RSTAR_STATUS_FORMAT);
    CHECK(strstr(rstar_last_error_message(), "bacth") != NULL);
    p.config = config;
    p.rounds = 1;
    p.threads = 1;

    memset(&c, 0, sizeof c);
    c.cancel_at_train = 1;
    st = rstar_evolve_run(&p, on_evolve, &c, &json);
    if (st == RSTAR_STATUS_EXEC) {
        printf("evolve: skipped (%s)\n", rstar_last_error_message());
        return 0;
    }
    CHECK(st == RSTAR_STATUS_CANCELLED && json == NULL && c.bad == 0);
    CHECK(c.events[RSTAR_EVOLVE_EVENT_TRAIN] == 1 && c.events[RSTAR_EVOLVE_EVENT_ROUND] == 1);

    memset(&c, 0, sizeof c);
    CHECK(rstar_evolve_run(&p, on_evolve, &c, &json) == RSTAR_STATUS_OK && c.bad == 0);
    /* Resumed: round 0 and the round's synthesis and extraction were done already. */
    CHECK(c.skipped >= 3 && c.events[RSTAR_EVOLVE_EVENT_ROUND] == 2);
    CHECK(json != NULL && json[0] == '[');
    printf("evolve:%s\n", json);
    rstar_string_free(json);
    json = NULL;

    memset(&c, 0, sizeof c);
    CHECK(rstar_evolve_run(&p, on_evolve, &c, NULL) == RSTAR_STATUS_OK && c.bad == 0);
    printf("evolve_rerun:stage=%d,skipped=%d,problems=%d,train=%d,round=%d\n",
           c.events[RSTAR_EVOLVE_EVENT_STAGE], c.skipped, c.events[RSTAR_EVOLVE_EVENT_PROBLEMS],
           c.events[RSTAR_EVOLVE_EVENT_TRAIN], c.events[RSTAR_EVOLVE_EVENT_ROUND]);
    return 0;
}

/* rstar_model_params: device, precision and threads, each bad value a status naming the field; a
 * greedy generation with one thread in exact precision must give the text of the default model. */
static int model_params_checks(const rstar_model *model, const char *model_dir,
                               const uint32_t *prompt, size_t n_prompt) {
    rstar_model *m = NULL;
    rstar_model_params mp;
    rstar_generate_params params;
    char *json = NULL;
    char *greedy_json = NULL;
    enum rstar_status st;

    rstar_model_default_params(&mp);
    CHECK(mp.struct_size == sizeof mp && mp.precision == 0 && mp.threads == 0 && mp.device == NULL);
    CHECK(mp.kv_dtype == 0 && mp.quant_load == 0);
    mp.device = "cuda";
    st = rstar_model_load_with_params(model_dir, &mp, &m);
    /* A machine without a CUDA device (or a build without CUDA) answers with the device status. */
    CHECK(st == RSTAR_STATUS_DEVICE || st == RSTAR_STATUS_OK);
    if (st == RSTAR_STATUS_DEVICE) {
        CHECK(m == NULL && strlen(rstar_last_error_message()) > 0);
    }
    rstar_model_free(m);
    m = NULL;
    printf("cuda model load: %d\n", (int)st);
    mp.device = "tpu";
    CHECK(rstar_model_load_with_params(model_dir, &mp, &m) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(m == NULL && strstr(rstar_last_error_message(), "params.device") != NULL);
    mp.device = "cpu";
    mp.precision = 7;
    CHECK(rstar_model_load_with_params(model_dir, &mp, &m) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(m == NULL && strstr(rstar_last_error_message(), "params.precision") != NULL);
    mp.precision = 0;
    mp.threads = 100000;
    CHECK(rstar_model_load_with_params(model_dir, &mp, &m) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(m == NULL && strstr(rstar_last_error_message(), "params.threads") != NULL);
    mp.threads = 0;
    mp.kv_dtype = 3;
    CHECK(rstar_model_load_with_params(model_dir, &mp, &m) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(m == NULL && strstr(rstar_last_error_message(), "params.kv_dtype") != NULL);
    mp.kv_dtype = 0;
    mp.quant_load = 2;
    CHECK(rstar_model_load_with_params(model_dir, &mp, &m) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(m == NULL && strstr(rstar_last_error_message(), "params.quant_load") != NULL);
    mp.quant_load = 0;

    /* An older struct that ends before `device`: the garbage pointer past its end is not read. */
    mp.precision = 0;
    mp.threads = 1;
    mp.device = (const char *)(uintptr_t)1;
    mp.struct_size = (uint32_t)offsetof(rstar_model_params, device);
    CHECK(rstar_model_load_with_params(model_dir, &mp, &m) == RSTAR_STATUS_OK && m != NULL);
    rstar_model_free(m);
    m = NULL;

    rstar_model_default_params(&mp);
    mp.device = "cpu";
    mp.threads = 1;
    CHECK(rstar_model_load_with_params(model_dir, &mp, &m) == RSTAR_STATUS_OK && m != NULL);
    rstar_generate_default_params(&params);
    params.max_new_tokens = 3;
    params.ignore_eos = true;
    CHECK(rstar_model_generate(model, prompt, n_prompt, &params, NULL, NULL, &greedy_json) == RSTAR_STATUS_OK);
    CHECK(rstar_model_generate(m, prompt, n_prompt, &params, NULL, NULL, &json) == RSTAR_STATUS_OK);
    {
        /* Same ids as the default model (exact precision does not depend on the thread count). */
        const char *a = strstr(json, "\"ids\"");
        const char *b = strstr(greedy_json, "\"ids\"");
        CHECK(a != NULL && b != NULL && strchr(a, ']') != NULL);
        CHECK(strncmp(a, b, (size_t)(strchr(a, ']') - a + 1)) == 0);
    }
    rstar_string_free(greedy_json);
    rstar_string_free(json);
    rstar_model_free(m);
    m = NULL;

    mp.precision = 1;
    mp.threads = 2;
    CHECK(rstar_model_load_with_params(model_dir, &mp, &m) == RSTAR_STATUS_OK);
    CHECK(rstar_model_generate(m, prompt, n_prompt, &params, NULL, NULL, &json) == RSTAR_STATUS_OK);
    CHECK(strstr(json, "\"ids\"") != NULL);
    rstar_string_free(json);
    rstar_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    rstar_model *model = NULL;
    uint32_t prompt[64];
    size_t n_prompt = 0;
    char *p;
    rstar_generate_params params;
    struct collect col;
    char *json = NULL;
    uint32_t *ids = NULL;
    size_t n_ids = 0;
    char *text = NULL;
    uint32_t vocab = 0;

    if (argc < 5 || argc > 7) return 2;
    CHECK(rstar_abi_version() == RSTAR_ABI_VERSION);
    CHECK(strlen(rstar_version()) > 0);

    /* Errors: a missing directory and NULL arguments give statuses and messages, never a crash. */
    CHECK(rstar_model_load("/nonexistent/model", &model) == RSTAR_STATUS_IO);
    CHECK(model == NULL);
    CHECK(strstr(rstar_last_error_message(), "/nonexistent/model") != NULL);
    CHECK(rstar_model_load(NULL, &model) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(rstar_model_generate(NULL, prompt, 1, NULL, NULL, NULL, NULL) == RSTAR_STATUS_INVALID_ARGUMENT);

    CHECK(rstar_model_load(argv[1], &model) == RSTAR_STATUS_OK);
    CHECK(model != NULL);
    CHECK(strcmp(rstar_last_error_message(), "") == 0);
    CHECK(rstar_model_vocab_size(model, &vocab) == RSTAR_STATUS_OK && vocab > 0);

    /* Tokenize / detokenize round trip. */
    CHECK(rstar_model_tokenize(model, "Let's think step by step.", true, &ids, &n_ids) == RSTAR_STATUS_OK);
    CHECK(n_ids > 0);
    CHECK(rstar_model_detokenize(model, ids, n_ids, false, &text) == RSTAR_STATUS_OK);
    CHECK(strcmp(text, "Let's think step by step.") == 0);
    rstar_string_free(text);
    rstar_ids_free(ids, n_ids);
    CHECK(rstar_model_detokenize(model, &vocab, 1, false, &text) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(text == NULL);

    for (p = argv[2]; *p && n_prompt < 64; n_prompt++) {
        prompt[n_prompt] = (uint32_t)strtoul(p, &p, 10);
        if (*p == ',') p++;
    }

    /* Streaming + cancellation: the callback returning false stops generation. */
    rstar_generate_default_params(&params);
    params.max_new_tokens = 8;
    params.ignore_eos = true;
    memset(&col, 0, sizeof col);
    col.cancel_after = 1;
    CHECK(rstar_model_generate(model, prompt, n_prompt, &params, on_text, &col, &json) == RSTAR_STATUS_CANCELLED);
    CHECK(json == NULL && col.calls == 1);

    /* Bad params are rejected with a message naming the field. */
    params.top_p = 0.0f;
    CHECK(rstar_model_generate(model, prompt, n_prompt, &params, NULL, NULL, &json) == RSTAR_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(rstar_last_error_message(), "top_p") != NULL);

    /* An older, smaller params struct (only up to max_new_tokens) keeps defaults for the rest. */
    rstar_generate_default_params(&params);
    params.struct_size = (uint32_t)(offsetof(rstar_generate_params, max_new_tokens) + sizeof(uint32_t));
    params.max_new_tokens = 3;
    CHECK(rstar_model_generate(model, prompt, n_prompt, &params, NULL, NULL, &json) == RSTAR_STATUS_OK);
    CHECK(strstr(json, "\"prompt_tokens\"") != NULL);
    rstar_string_free(json);
    if (model_params_checks(model, argv[1], prompt, n_prompt) != 0) return 1;

    /* Greedy generation, streamed; the Rust side compares the ids with HF's. */
    rstar_generate_default_params(&params);
    params.max_new_tokens = (uint32_t)atoi(argv[3]);
    params.ignore_eos = true;
    memset(&col, 0, sizeof col);
    CHECK(rstar_model_generate(model, prompt, n_prompt, &params, on_text, &col, &json) == RSTAR_STATUS_OK);
    CHECK(json != NULL);
    printf("streamed:");
    for (n_ids = 0; n_ids < col.len; n_ids++) printf("%02x", (unsigned char)col.buf[n_ids]);
    printf("\n");
    printf("%s\n", json);
    rstar_string_free(json);

    /* Tree engine: add, expand into 3 children, fork, stats, remove. */
    {
        rstar_engine *engine = NULL;
        rstar_engine_params eparams;
        uint64_t root = 0, child = 0;
        char *stats = NULL;
        rstar_engine_default_params(&eparams);
        eparams.kv_budget_mb = 16;
        CHECK(rstar_engine_new(model, &eparams, &engine) == RSTAR_STATUS_OK);
        CHECK(rstar_engine_add(engine, prompt, n_prompt, &root) == RSTAR_STATUS_OK);
        rstar_generate_default_params(&params);
        params.max_new_tokens = 4;
        params.temperature = 1.0f;
        params.ignore_eos = true;
        CHECK(rstar_engine_expand(engine, root, 3, &params, &json) == RSTAR_STATUS_OK);
        CHECK(strstr(json, "\"candidates\"") != NULL && strstr(json, "\"seq\"") != NULL);
        rstar_string_free(json);
        CHECK(rstar_engine_fork(engine, root, &child) == RSTAR_STATUS_OK && child != root);
        CHECK(rstar_engine_append(engine, child, prompt, 2) == RSTAR_STATUS_OK);
        CHECK(rstar_engine_remove(engine, child) == RSTAR_STATUS_OK);
        CHECK(rstar_engine_remove(engine, child) == RSTAR_STATUS_INVALID_ARGUMENT);
        CHECK(rstar_engine_stats(engine, &stats) == RSTAR_STATUS_OK);
        CHECK(strstr(stats, "\"tokens_computed\"") != NULL);
        rstar_string_free(stats);
        rstar_engine_free(engine);
    }

    /* Process reward model: two sequences sharing a prefix, scored together. */
    {
        rstar_ppm *ppm = NULL;
        const uint32_t *seqs[2];
        size_t lens[2];
        float values[2] = {0.0f, 0.0f};
        CHECK(rstar_ppm_load("/nonexistent/ppm", NULL, &ppm) != RSTAR_STATUS_OK && ppm == NULL);
        CHECK(rstar_ppm_load(argv[4], NULL, &ppm) == RSTAR_STATUS_OK);
        seqs[0] = prompt;
        lens[0] = n_prompt;
        seqs[1] = prompt;
        lens[1] = n_prompt - 1;
        CHECK(rstar_ppm_score(ppm, seqs, lens, 2, values) == RSTAR_STATUS_OK);
        CHECK(values[0] != values[1]);
        printf("ppm:%.6f,%.6f\n", values[0], values[1]);
        rstar_ppm_free(ppm);
    }
    if (argc >= 6 && solver_checks(argv[1], argv[4], argv[5]) != 0) return 1;
    if (argc == 7 && evolve_checks(argv[1], argv[5], argv[6]) != 0) return 1;
    rstar_model_free(model);
    rstar_model_free(NULL);
    rstar_string_free(NULL);
    return 0;
}
