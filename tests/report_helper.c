/* report_helper.c: a helper of the report test (not a test itself):
 *   report_helper STORE_DIR
 * writes one finished run shaped like the paper's ranking pipeline through the store API: data,
 * teacher SFT, distilled student, two gradual OSSCAR MLP steps with re-distillation, KV-group
 * pruning, an SLM, four quantize branches, evaluate and benchmark stages (some benchmarks with a
 * trace.csv, one with percentiles only), a model made by a command stage with no config.json, and
 * names long enough to make the report shrink its columns. Metric values follow smooth formulas
 * of a seeded generator: the test reads them back with `smelt query` and checks the report against
 * them, never against numbers written here. Prints the run id.
 *   report_helper STORE_DIR 2
 * writes the second run of the compare test: w4-gptq with group size 128 (its key and AUC
 * differ) and fp8 benchmarked with 64 requests (faster), everything else the same. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/sha256.h"
#include "common/strbuf.h"
#include "store/runs.h"
#include "store/store.h"

#define LAYERS 6

typedef struct {
    const char *name, *kind, *params; /* params: JSON of the resolved parameters */
    const char *in[4][2];             /* parameter path, stage it names (main output) */
    const char *out_kind;
} fx_stage;

/* The pipeline, in topological order. */
static const fx_stage stages[] = {
    {"data", "data", "{\"source\":\"synthetic\",\"members\":400}", {{0}}, "dataset"},
    {"teacher", "train", "{\"data\":\"data\",\"loss\":{\"ce\":1,\"fkl\":0},\"steps\":300}", {{"data", "data"}}, "model"},
    {"student", "train", "{\"data\":\"data\",\"teacher\":\"teacher\",\"loss\":{\"ce\":0.1,\"fkl\":0.9},\"steps\":300}",
     {{"data", "data"}, {"teacher", "teacher"}}, "model"},
    {"prune-mlp-gradual-step-1", "prune", "{\"model\":\"student\",\"method\":\"osscar\",\"mlp\":{\"remove\":88}}",
     {{"model", "student"}, {"calibration", "data"}}, "model"},
    {"redistill-after-mlp-pruning-step-1", "train",
     "{\"data\":\"data\",\"init\":\"prune-mlp-gradual-step-1\",\"teacher\":\"student\",\"loss\":{\"ce\":0.1,\"fkl\":0.9}}",
     {{"data", "data"}, {"init", "prune-mlp-gradual-step-1"}, {"teacher", "student"}}, "model"},
    {"prune-attn", "prune", "{\"model\":\"redistill-after-mlp-pruning-step-1\",\"method\":\"osscar\","
                            "\"attention\":{\"remove_kv_groups\":1}}",
     {{"model", "redistill-after-mlp-pruning-step-1"}, {"calibration", "data"}}, "model"},
    {"slm", "train", "{\"data\":\"data\",\"init\":\"prune-attn\",\"teacher\":\"student\",\"loss\":{\"ce\":0.1,\"fkl\":0.9}}",
     {{"data", "data"}, {"init", "prune-attn"}, {"teacher", "student"}}, "model"},
    {"fp8", "quantize", "{\"model\":\"slm\",\"method\":\"fp8\",\"activations\":\"fp8\",\"bits\":8,\"group_size\":-1}",
     {{"model", "slm"}}, "model"},
    {"w8a8", "quantize", "{\"model\":\"slm\",\"method\":\"smoothquant+gptq\",\"activations\":\"int8\",\"bits\":8,"
                         "\"group_size\":-1}", {{"model", "slm"}, {"calibration", "data"}}, "model"},
    {"w4-gptq", "quantize", "{\"model\":\"slm\",\"method\":\"gptq\",\"activations\":\"none\",\"bits\":4,\"group_size\":32}",
     {{"model", "slm"}, {"calibration", "data"}}, "model"},
    {"w4-quantease-five-sweeps-static-groups", "quantize",
     "{\"model\":\"slm\",\"method\":\"quantease\",\"activations\":\"none\",\"bits\":4,\"group_size\":32}",
     {{"model", "slm"}, {"calibration", "data"}}, "model"},
    {"handmade", "command", "{\"run\":\"cp model $SMELT_OUTPUT_DIR\"}", {{0}}, "model"},
    {"eval[teacher]", "evaluate", "{\"model\":\"teacher\",\"data\":\"data\",\"split\":\"test\"}",
     {{"model", "teacher"}, {"data", "data"}}, "evaluation"},
    {"eval[student]", "evaluate", "{\"model\":\"student\",\"data\":\"data\",\"split\":\"test\",\"reference\":\"eval[teacher]\"}",
     {{"model", "student"}, {"data", "data"}, {"reference", "eval[teacher]"}}, "evaluation"},
    {"eval-student-calibration", "evaluate",
     "{\"model\":\"student\",\"data\":\"data\",\"split\":\"calibration\",\"reference\":\"eval[teacher]\"}",
     {{"model", "student"}, {"data", "data"}, {"reference", "eval[teacher]"}}, "evaluation"},
    {"eval[redistill-after-mlp-pruning-step-1]", "evaluate",
     "{\"model\":\"redistill-after-mlp-pruning-step-1\",\"data\":\"data\",\"split\":\"test\",\"reference\":\"eval[teacher]\"}",
     {{"model", "redistill-after-mlp-pruning-step-1"}, {"data", "data"}, {"reference", "eval[teacher]"}}, "evaluation"},
    {"eval[slm]", "evaluate", "{\"model\":\"slm\",\"data\":\"data\",\"split\":\"test\",\"reference\":\"eval[teacher]\"}",
     {{"model", "slm"}, {"data", "data"}, {"reference", "eval[teacher]"}}, "evaluation"},
    {"eval[fp8]", "evaluate", "{\"model\":\"fp8\",\"data\":\"data\",\"split\":\"test\",\"reference\":\"eval[teacher]\"}",
     {{"model", "fp8"}, {"data", "data"}, {"reference", "eval[teacher]"}}, "evaluation"},
    {"eval[w8a8]", "evaluate", "{\"model\":\"w8a8\",\"data\":\"data\",\"split\":\"test\",\"reference\":\"eval[teacher]\"}",
     {{"model", "w8a8"}, {"data", "data"}, {"reference", "eval[teacher]"}}, "evaluation"},
    {"eval[w4-gptq]", "evaluate", "{\"model\":\"w4-gptq\",\"data\":\"data\",\"split\":\"test\",\"reference\":\"eval[teacher]\"}",
     {{"model", "w4-gptq"}, {"data", "data"}, {"reference", "eval[teacher]"}}, "evaluation"},
    {"eval[w4-quantease-five-sweeps-static-groups]", "evaluate",
     "{\"model\":\"w4-quantease-five-sweeps-static-groups\",\"data\":\"data\",\"split\":\"test\",\"reference\":\"eval[teacher]\"}",
     {{"model", "w4-quantease-five-sweeps-static-groups"}, {"data", "data"}, {"reference", "eval[teacher]"}},
     "evaluation"},
    {"eval[handmade]", "evaluate", "{\"model\":\"handmade\",\"data\":\"data\",\"split\":\"test\"}",
     {{"model", "handmade"}, {"data", "data"}}, "evaluation"},
    {"bench[teacher]", "benchmark", "{\"model\":\"teacher\"}", {{"model", "teacher"}}, "benchmark"},
    {"bench[student]", "benchmark", "{\"model\":\"student\"}", {{"model", "student"}}, "benchmark"},
    {"bench[slm]", "benchmark", "{\"model\":\"slm\"}", {{"model", "slm"}}, "benchmark"},
    {"bench[fp8]", "benchmark", "{\"model\":\"fp8\"}", {{"model", "fp8"}}, "benchmark"},
    {"bench[w4-quantease-five-sweeps-static-groups]", "benchmark",
     "{\"model\":\"w4-quantease-five-sweeps-static-groups\"}", {{"model", "w4-quantease-five-sweeps-static-groups"}},
     "benchmark"},
};
#define N_STAGES ((int)(sizeof stages / sizeof stages[0]))

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static int variant = 1; /* 2: the compare test's second run */
static double uniform(void) { /* xorshift64*, in [0, 1) */
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

static int check(int rc, const char *what) {
    if (rc) fprintf(stderr, "report_helper: %s: %s\n", what, err_msg());
    return rc;
}

#define MAXP 4096
typedef struct {
    metric_point p[MAXP];
    char keys[MAXP][48];
    int n;
} points;

static void put(points *m, const char *key, int64_t step, double v) {
    if (m->n == MAXP) return;
    snprintf(m->keys[m->n], sizeof m->keys[m->n], "%s", key);
    m->p[m->n] = (metric_point){m->keys[m->n], step, v};
    m->n++;
}

/* Parameters of each model, AUC of each evaluated one, TTFT scale of each benchmarked one. */
static double params_of(const char *name) {
    if (!strcmp(name, "teacher")) return 8.03e9;
    if (!strcmp(name, "student")) return 3.21e9;
    if (!strcmp(name, "prune-mlp-gradual-step-1") || !strncmp(name, "redistill", 9)) return 2.79e9;
    return 2.41e9; /* prune-attn, slm */
}

static double auc_of(const char *model) {
    static const struct {
        const char *m;
        double auc;
    } t[] = {{"teacher", 0.7512}, {"student", 0.7498}, {"redistill-after-mlp-pruning-step-1", 0.7503},
             {"slm", 0.7489}, {"fp8", 0.7487}, {"w8a8", 0.7480}, {"w4-gptq", 0.7391},
             {"w4-quantease-five-sweeps-static-groups", 0.7456}, {"handmade", 0.6120}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(t[i].m, model)) return t[i].auc - (variant == 2 && !strcmp(model, "w4-gptq") ? 0.0042 : 0);
    return NAN;
}

/* TTFT p50 in ms of a benchmarked model. */
static double ttft_of(const char *model) {
    if (!strcmp(model, "fp8")) return variant == 2 ? 152 : 214;
    return !strcmp(model, "teacher") ? 1032 : !strcmp(model, "student") ? 412 : !strcmp(model, "slm") ? 271 : 171;
}

/* The parameters of a stage in this run. */
static const char *params_of_stage(const fx_stage *st) {
    if (variant == 2 && !strcmp(st->name, "w4-gptq"))
        return "{\"model\":\"slm\",\"method\":\"gptq\",\"activations\":\"none\",\"bits\":4,\"group_size\":128}";
    if (variant == 2 && !strcmp(st->name, "bench[fp8]")) return "{\"model\":\"fp8\",\"requests\":64}";
    return st->params;
}

static void stage_metrics(points *m, const fx_stage *st, const char *model) {
    if (!strcmp(st->kind, "train")) {
        double p = params_of(st->name), l0 = 2 + uniform();
        for (int s = 1; s <= 300; s++) {
            double loss = 0.4 + l0 * exp(-s / 60.0) + 0.05 * (uniform() - 0.5);
            put(m, "loss", s, loss);
            put(m, "lr", s, 1e-3 * (s < 30 ? s / 30.0 : 1));
            if (s % 50 == 0) put(m, "valid_loss", s, 0.45 + l0 * exp(-s / 60.0));
            put(m, "tokens_per_s", s, 1500 + 100 * uniform());
        }
        put(m, "params", 0, p);
        put(m, "selected_step", 0, 300);
    } else if (!strcmp(st->kind, "prune")) {
        int attn = strstr(st->params, "remove_kv_groups") != NULL;
        double before = attn ? 2.79e9 : 3.21e9, after = attn ? 2.41e9 : 2.79e9, sm = 0;
        for (int l = 0; l < LAYERS; l++) {
            double e = (attn ? 0.08 : 0.02) * (1 + l / 3.0) * (0.8 + 0.4 * uniform());
            put(m, attn ? "rel_error_attn" : "rel_error_mlp", l, e);
            put(m, attn ? "groups_removed_attn" : "groups_removed_mlp", l, attn ? 1 : 88);
            put(m, "seconds", l, 2 + uniform());
            sm += e;
        }
        put(m, attn ? "rel_error_attn_mean" : "rel_error_mlp_mean", 0, sm / LAYERS);
        put(m, "params_before", 0, before);
        put(m, "params", 0, after);
    } else if (!strcmp(st->kind, "quantize")) {
        static const char *const lin[] = {"q", "k", "v", "o", "gate", "up", "down"};
        double scale = strstr(st->params, "\"fp8\"") ? 3e-4 : strstr(st->params, "\"bits\":8") ? 8e-4
                     : strstr(st->params, "quantease") ? 6e-3 : 1e-2;
        double sum = 0;
        for (int l = 0; l < LAYERS; l++)
            for (int k = 0; k < 7; k++) {
                char key[32];
                snprintf(key, sizeof key, "rel_error_%s", lin[k]);
                double e = scale * (1 + 0.3 * k) * (0.7 + 0.6 * uniform());
                put(m, key, l, e);
                sum += e;
            }
        int bits = strstr(st->params, "\"bits\":4") ? 4 : 8;
        put(m, "bytes", 0, 2.41e9 * (bits + 0.5) / 8 + 0.5e9);
        put(m, "bits_per_weight", 0, bits + (bits == 4 ? 0.5 : 0.03));
        put(m, "rel_error_mean", 0, sum / (7 * LAYERS));
    } else if (!strcmp(st->kind, "evaluate")) {
        double auc = auc_of(model), ref = auc_of("teacher");
        if (strstr(st->params, "calibration")) auc -= 0.05;
        put(m, "auc", 0, auc);
        put(m, "auc_like", 0, auc + 0.01);
        put(m, "auc_save", 0, auc - 0.01);
        put(m, "examples", 0, 4000);
        put(m, "log_loss", 0, 0.6 - (auc - 0.7));
        put(m, "perplexity", 0, 12.5);
        if (strstr(st->params, "reference")) {
            put(m, "auc_ref", 0, ref);
            put(m, "auc_delta", 0, auc - ref);
            put(m, "auc_delta_pct", 0, 100 * (auc - ref) / ref);
            put(m, "auc_delta_like", 0, auc - ref); /* the teacher's like and save are its auc ± 0.01 */
            put(m, "auc_delta_save", 0, auc - ref);
        }
    } else if (!strcmp(st->kind, "benchmark")) {
        double base = ttft_of(model);
        put(m, "ttft_ms_p50", 0, base);
        put(m, "ttft_ms_p99", 0, base * 2.3);
        put(m, "tpot_ms_p50", 0, base / 40);
        put(m, "tpot_ms_p99", 0, base / 25);
        put(m, "requests_per_s", 0, 8000 / base);
        put(m, "input_tokens_per_s", 0, 16000 * 8000 / base);
        put(m, "output_tokens_per_s", 0, 8000 / base);
        put(m, "e2e_ms_p50", 0, base * 1.1);
        put(m, "e2e_ms_p99", 0, base * 2.5);
        if (strcmp(model, "fp8")) { /* fp8's benchmark measured no prefill or breakdown */
            put(m, "prefix_hit_ratio", 0, 0.82);
            put(m, "prefill_cold_ms", 0, base * 0.9);
            put(m, "prefill_hot_ms", 0, base * 0.16);
            double fw = 0, at = 0, ml = 0;
            for (int l = 0; l < LAYERS; l++) {
                double a = base / 20 * (1 + 0.1 * uniform()), b = base / 30 * (1 + 0.1 * uniform());
                put(m, "layer_attention_ms", l, a);
                put(m, "layer_mlp_ms", l, b);
                at += a, ml += b;
            }
            fw = (at + ml) * 1.1;
            put(m, "forward_ms", 0, fw);
            put(m, "attention_ms", 0, at);
            put(m, "mlp_ms", 0, ml);
            put(m, "attention_share", 0, at / fw);
        }
    } else if (!strcmp(st->kind, "data")) {
        put(m, "examples_test", 0, 4000);
    }
}

/* The files of a stage's output: a trace for most benchmarks, a config for models. */
static int write_output_files(const char *dir, const fx_stage *st, const char *model) {
    char *p = fs_join(dir, "README"), *text = xasprintf("%s %s", st->name, params_of_stage(st));
    int rc = !p || !text || fs_write_atomic(p, text, strlen(text));
    free(p), free(text);
    if (rc) return -1;
    if (!strcmp(st->kind, "benchmark") && strcmp(model, "student")) { /* the student's has percentiles only */
        double base = ttft_of(model);
        strbuf sb = STRBUF_INIT;
        rc = sb_puts(&sb, "request,member,candidate,arrival_s,first_token_s,finish_s,prompt_tokens,output_tokens,"
                          "cached_tokens,cache_hit,error\n");
        for (int i = 0; i < 512 && !rc; i++) {
            double arr = i * 0.125, ttft = base / 1000 * exp(0.5 * (uniform() + uniform() + uniform() - 1.5));
            rc = sb_printf(&sb, "%d,%d,%d,%.6f,%.6f,%.6f,16000,1,%d,%d,%d\n", i, i / 8, i % 8, arr, arr + ttft,
                           arr + ttft + 0.001, i % 8 ? 15000 : 0, i % 8 != 0, i == 5);
        }
        p = fs_join(dir, "trace.csv");
        rc = rc || !p || fs_write_atomic(p, sb.buf, sb.len);
        free(p);
        sb_free(&sb);
    }
    return rc ? -1 : 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "2"))) {
        fprintf(stderr, "usage: report_helper STORE_DIR [2]\n");
        return 2;
    }
    if (argc == 3) variant = 2;
    store *s;
    if (check(store_open(&s, argv[1], STORE_CREATE), "opening the store")) return 1;
    char run[RUN_ID_MAX];
    run_id_new(run);
    int rc = check(store_run_create(s, run, "paper-fixture", NULL, "smelt: 1\nname: paper-fixture\n", "[]", 1), "run");
    char digests[N_STAGES][SHA256_HEX_LEN + 1];
    for (int i = 0; i < N_STAGES && !rc; i++) {
        const fx_stage *st = &stages[i];
        const char *model = st->in[0][0] && !strcmp(st->in[0][0], "model") ? st->in[0][1] : st->name;
        input_row in[4];
        int n_in = 0;
        for (int k = 0; k < 4 && st->in[k][0]; k++) {
            int from = 0;
            while (from < i && strcmp(stages[from].name, st->in[k][1])) from++;
            memset(&in[n_in], 0, sizeof in[n_in]);
            snprintf(in[n_in].name, sizeof in[n_in].name, "%s", st->in[k][0]);
            snprintf(in[n_in].from_stage, sizeof in[n_in].from_stage, "%s", st->in[k][1]);
            snprintf(in[n_in].from_output, sizeof in[n_in].from_output, "%s",
                     !strcmp(st->in[k][0], "calibration") ? "calibration" : "output");
            memcpy(in[n_in].digest, digests[from], sizeof in[n_in].digest);
            n_in++;
        }
        char key[SHA256_HEX_LEN + 1], *key_json = NULL, *dir = NULL;
        const char *params = params_of_stage(st);
        /* like a real key: the parameters, and the digest of every input (a Merkle chain) */
        strbuf inputs = STRBUF_INIT;
        for (int k = 0; k < n_in; k++)
            sb_printf(&inputs, "%s\"%s\":\"%s\"", k ? "," : "", in[k].name, in[k].digest);
        key_json = xasprintf("{\"inputs\":{%s},\"kind\":\"%s\",\"params\":%s,\"seed\":7,\"version\":1}",
                             sb_str(&inputs), st->kind, params);
        sb_free(&inputs);
        sha256_hex(key, key_json, strlen(key_json));
        char name[64];
        snprintf(name, sizeof name, "tmp/fixture-%d", i);
        dir = store_path(s, name);
        uint64_t bytes;
        points *m = calloc(1, sizeof *m);
        rc = check(!key_json || !dir || !m || store_stage_create(s, run, st->name, st->kind, 1, i, 1, 0) ||
                   store_stage_prepare(s, run, st->name, key, key_json, params, in, n_in) ||
                   store_params_put(s, run, st->name, params), st->name);
        if (!rc) rc = check(fs_mkdir_p(dir, 0755) || write_output_files(dir, st, model) ||
                            store_put_dir(s, dir, 1, digests[i], &bytes), "output files");
        if (!rc) {
            stage_metrics(m, st, model);
            output_row out = {.name = "", .kind = "", .digest = ""};
            snprintf(out.name, sizeof out.name, "%s", !strcmp(st->out_kind, "model") ? "model" : "output");
            snprintf(out.kind, sizeof out.kind, "%s", st->out_kind);
            memcpy(out.digest, digests[i], sizeof out.digest);
            rc = check(store_metrics_put(s, run, st->name, m->p, m->n) || store_stage_commit(s, run, st->name, &out, 1),
                       "commit");
        }
        if (dir) fs_rm_rf(dir);
        free(dir), free(key_json), free(m);
    }
    if (!rc) rc = check(store_run_set_status(s, run, "ok", NULL), "run status");
    store_close(s);
    if (!rc) printf("%s\n", run);
    return rc ? 1 : 0;
}
