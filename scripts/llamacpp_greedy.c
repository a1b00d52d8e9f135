/*
 * llamacpp_greedy: the llama.cpp side of tests/fixtures/llamacpp_reference.json.
 *
 * Usage: llamacpp_greedy MODEL.gguf PROMPTS.txt N_PREDICT THREADS [TEXT.txt]
 *   PROMPTS.txt holds one prompt per line (plain text; "\n" written as the two characters
 *   backslash-n). Each prompt is tokenized as llama.cpp tokenizes a prompt (llama_tokenize with
 *   add_special = true, parse_special = false: BOS only where the GGUF asks for it), decoded in one
 *   batch, then N_PREDICT tokens are chosen greedily (argmax of the logits, lowest id on a tie),
 *   continuing past end-of-generation tokens. Prints one JSON object:
 *   {"add_bos": bool, "prompts": [{"ids": [...], "greedy": [...]}, ...], "text_tokens": n}
 *   where text_tokens (only with TEXT.txt) counts the tokens llama-perplexity makes of the file
 *   (the same llama_tokenize call).
 *
 * Built against llama.h and the static libraries of llama.cpp by
 * scripts/make_llamacpp_reference.sh; our code only, nothing of llama.cpp is committed.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)level;
    (void)text;
    (void)user;
}

/* Replaces the two characters backslash-n by a newline, in place. */
static void unescape(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] == 'n') {
            *w++ = '\n';
            r++;
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
}

static int argmax(const float *logits, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (logits[i] > logits[best]) best = i;
    }
    return best;
}

static void print_ids(const llama_token *ids, int n) {
    printf("[");
    for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
    printf("]");
}

/* Greedy continuation of one prompt; returns 0 on success. */
static int run_prompt(struct llama_model *model, const char *text, int n_predict, int threads) {
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab);
    int cap = (int)strlen(text) + 16;
    llama_token *ids = malloc(sizeof(llama_token) * (size_t)(cap + n_predict));
    int n = llama_tokenize(vocab, text, (int)strlen(text), ids, cap, true, false);
    if (n < 0) {
        fprintf(stderr, "tokenize failed\n");
        return 1;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n + n_predict + 8);
    cp.n_batch = cp.n_ctx;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "cannot make a context\n");
        return 1;
    }
    printf("{\"ids\":");
    print_ids(ids, n);
    llama_token *out = ids + n;
    struct llama_batch batch = llama_batch_get_one(ids, n);
    for (int i = 0; i < n_predict; i++) {
        if (llama_decode(ctx, batch)) {
            fprintf(stderr, "decode failed\n");
            return 1;
        }
        out[i] = argmax(llama_get_logits_ith(ctx, -1), n_vocab);
        batch = llama_batch_get_one(&out[i], 1);
    }
    printf(",\"greedy\":");
    print_ids(out, n_predict);
    printf("}");
    llama_free(ctx);
    free(ids);
    return 0;
}

/* Tokens of the whole file at `path` (as llama-perplexity tokenizes it), or -1. */
static long text_tokens(const struct llama_vocab *vocab, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)len + 1);
    size_t got = fread(text, 1, (size_t)len, f);
    fclose(f);
    text[got] = 0;
    int32_t cap = (int32_t)got + 16;
    llama_token *ids = malloc(sizeof(llama_token) * (size_t)cap);
    int32_t n = llama_tokenize(vocab, text, (int32_t)got, ids, cap, true, false);
    free(ids);
    free(text);
    return n;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPTS.txt N_PREDICT THREADS [TEXT.txt]\n", argv[0]);
        return 2;
    }
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    FILE *f = fopen(argv[2], "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", argv[2]);
        return 1;
    }
    int n_predict = atoi(argv[3]), threads = atoi(argv[4]);
    printf("{\"add_bos\":%s,\"prompts\":[",
           llama_vocab_get_add_bos(llama_model_get_vocab(model)) ? "true" : "false");
    static char line[1 << 16];
    int k = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0]) continue;
        unescape(line);
        if (k++) printf(",");
        if (run_prompt(model, line, n_predict, threads)) return 1;
    }
    printf("]");
    if (argc == 6) printf(",\"text_tokens\":%ld", text_tokens(llama_model_get_vocab(model), argv[5]));
    printf("}\n");
    fclose(f);
    llama_model_free(model);
    return 0;
}
