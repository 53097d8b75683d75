/* data_testutil.h: helpers of the data stage tests: run the data stage's library call on a recipe
 * written in YAML (validated by the real recipe validator, so defaults are the shipped ones),
 * capture its metrics, and decode examples of builtin:bytes splits. */
#ifndef SMELT_TESTS_DATA_TESTUTIL_H
#define SMELT_TESTS_DATA_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/strbuf.h"
#include "pipeline/recipe.h"
#include "stages/data/data.h"
#include "stages/data/dataset.h"

typedef struct {
    char key[64];
    double value;
} dt_metric;

typedef struct {
    dt_metric m[256];
    int n;
} dt_metrics;

static inline int dt_metric_cb(void *ctx, const char *key, double value) {
    dt_metrics *ms = ctx;
    if (ms->n < 256) {
        snprintf(ms->m[ms->n].key, sizeof ms->m[0].key, "%s", key);
        ms->m[ms->n++].value = value;
    }
    return 0;
}

static inline double dt_get(const dt_metrics *ms, const char *key) {
    for (int i = ms->n - 1; i >= 0; i--)
        if (!strcmp(ms->m[i].key, key)) return ms->m[i].value;
    return -1e300;
}

/* Writes dir/recipe.yaml with one data stage whose parameters are `body` (YAML lines indented by 4
 * spaces), validates it, and builds into dir/out and dir/cal (recreated). 0 or -1 (error slot). */
static inline int dt_build(const char *dir, const char *body, int64_t seed, dt_metrics *ms) {
    char *yaml = xasprintf("smelt: 1\nstages:\n  d:\n    kind: data\n%s", body);
    char *rpath = fs_join(dir, "recipe.yaml"), *out = fs_join(dir, "out"), *cal = fs_join(dir, "cal");
    recipe *r = NULL;
    int rc = -1;
    if (!yaml || !rpath || !out || !cal) goto done;
    fs_rm_rf(out);
    fs_rm_rf(cal);
    if (fs_mkdir_p(out, 0755) || fs_mkdir_p(cal, 0755) || fs_write_atomic(rpath, yaml, strlen(yaml))) goto done;
    if (recipe_load(&r, rpath, NULL, 0)) goto done;
    if (ms) ms->n = 0;
    rc = data_build(r->stages[0].params, seed, out, cal, ms ? dt_metric_cb : NULL, ms);
done:
    recipe_free(r);
    free(yaml);
    free(rpath);
    free(out);
    free(cal);
    return rc;
}

/* Text of the first n tokens of example i of a builtin:bytes split (BOS as <256>, " yes", " no"). */
static inline char *dt_decode_n(const ds_split *s, int64_t i, uint32_t n) {
    strbuf sb = STRBUF_INIT;
    const int32_t *t = ds_example_tokens(s, i);
    for (uint32_t k = 0; k < n; k++) {
        if (t[k] < 256) sb_putc(&sb, (char)t[k]);
        else if (t[k] == 259) sb_puts(&sb, " yes");
        else if (t[k] == 260) sb_puts(&sb, " no");
        else sb_printf(&sb, "<%d>", t[k]);
    }
    if (!sb.buf) sb_puts(&sb, "");
    return sb_detach(&sb);
}

static inline char *dt_decode(const ds_split *s, int64_t i) { return dt_decode_n(s, i, s->ex[i].n_tokens); }

#endif
