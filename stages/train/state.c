/* state.c: save and load of the `train` stage's in-stage checkpoints (see state.h). Raw fp32
 * buffers in the model's layout (the layout is fixed by the config, which the fingerprint pins). */
#include "stages/train/state.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/sha256.h"

#define STATE_VERSION 1

static int write_floats(const char *dir, const char *name, const float *x, size_t n, cJSON *files) {
    char *path = fs_join(dir, name);
    if (!path) return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = 0;
    if (fd < 0 || fs_write_all(fd, x, n * sizeof(float)) || fsync(fd)) rc = err_errno("writing %s", path);
    if (fd >= 0) close(fd);
    char hex[SHA256_HEX_LEN + 1];
    if (!rc) {
        sha256_hex(hex, x, n * sizeof(float));
        cJSON *f = cJSON_AddObjectToObject(files, name);
        if (!f || !cJSON_AddNumberToObject(f, "bytes", (double)(n * sizeof(float))) ||
            !cJSON_AddStringToObject(f, "sha256", hex))
            rc = err_set(ERR_NOMEM, "out of memory writing state.json");
    }
    free(path);
    return rc;
}

int64_t state_newest(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int64_t best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long s;
        char tail;
        if (sscanf(e->d_name, "step-%lld%c", &s, &tail) != 1) continue;
        char *sj = xasprintf("%s/%s/state.json", dir, e->d_name);
        if (sj && fs_exists(sj) && s > best) best = s;
        free(sj);
    }
    closedir(d);
    return best;
}

/* Removes every step-* folder of dir except `keep` (and stale temporaries). */
static void remove_others(const char *dir, const char *keep) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "step-", 5) && strncmp(e->d_name, ".tmp-step-", 10)) continue;
        if (!strcmp(e->d_name, keep)) continue;
        char *p = fs_join(dir, e->d_name);
        if (p) fs_rm_rf(p);
        free(p);
    }
    closedir(d);
}

int state_save(const char *dir, const train_progress *p, const model *m, const optimizer *o, const float *best,
               const char *fingerprint) {
    char name[48], tmpname[64];
    snprintf(name, sizeof name, "step-%09lld", (long long)p->step);
    snprintf(tmpname, sizeof tmpname, ".tmp-%s", name);
    char *tmp = fs_join(dir, tmpname), *final = fs_join(dir, name);
    cJSON *j = cJSON_CreateObject(), *files = j ? cJSON_AddObjectToObject(j, "files") : NULL;
    char *text = NULL;
    int rc = (!tmp || !final || !files) ? -1 : 0;
    if (!rc) rc = fs_rm_rf(tmp) || fs_mkdir_p(tmp, 0755);
    const size_t n = m->w.n_floats;
    if (!rc) rc = write_floats(tmp, "params.bin", m->w.mem, n, files);
    if (!rc) rc = write_floats(tmp, "adam_m.bin", o->m.mem, n, files);
    if (!rc) rc = write_floats(tmp, "adam_v.bin", o->v.mem, n, files);
    if (!rc && best) rc = write_floats(tmp, "best.bin", best, n, files);
    if (!rc) {
        char rng[24];
        snprintf(rng, sizeof rng, "%016" PRIx64, p->rng);
        cJSON_AddStringToObject(j, "format", "smelt-train-state");
        cJSON_AddNumberToObject(j, "version", STATE_VERSION);
        cJSON_AddStringToObject(j, "fingerprint", fingerprint);
        cJSON_AddNumberToObject(j, "step", (double)p->step);
        cJSON_AddNumberToObject(j, "optimizer_step", (double)o->step);
        cJSON_AddNumberToObject(j, "epoch", (double)p->cursor.epoch);
        cJSON_AddNumberToObject(j, "index", (double)p->cursor.index);
        cJSON_AddStringToObject(j, "rng", rng);
        cJSON_AddNumberToObject(j, "tokens_seen", (double)p->tokens_seen);
        cJSON_AddBoolToObject(j, "have_best", p->have_best);
        char bl[48]; /* hexadecimal: the value round-trips exactly */
        snprintf(bl, sizeof bl, "%a", p->have_best ? p->best_loss : 0.0);
        cJSON_AddStringToObject(j, "best_loss", bl);
        cJSON_AddNumberToObject(j, "best_step", (double)p->best_step);
        text = cJSON_Print(j);
        char *sp = fs_join(tmp, "state.json");
        rc = (!text || !sp) ? err_set(ERR_NOMEM, "out of memory writing state.json") : fs_write_atomic(sp, text, strlen(text));
        free(sp);
    }
    if (!rc && (fs_fsync_path(tmp) || fs_rm_rf(final))) rc = -1;
    if (!rc && rename(tmp, final)) rc = err_errno("renaming %s to %s", tmp, final);
    if (!rc) rc = fs_fsync_path(dir);
    if (!rc) remove_others(dir, name);
    if (rc) {
        err_prefix("in-stage checkpoint of step %lld: ", (long long)p->step);
        if (tmp) fs_rm_rf(tmp);
    }
    cJSON_Delete(j);
    free(text), free(tmp), free(final);
    return rc;
}

/* Reads name into x[n] after checking its size and digest against state.json's entry. */
static int read_floats(const char *dir, const cJSON *files, const char *name, float *x, size_t n) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(files, name);
    const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(f, "bytes"), *sha = cJSON_GetObjectItemCaseSensitive(f, "sha256");
    char *path = fs_join(dir, name);
    if (!path) return -1;
    int rc = 0;
    if (!cJSON_IsNumber(bytes) || !cJSON_IsString(sha)) {
        rc = err_set(ERR_CORRUPT, "%s/state.json has no size and digest for %s", dir, name);
    } else if (!(bytes->valuedouble >= 0 && bytes->valuedouble <= 0x1p62) ||
               (size_t)bytes->valuedouble != n * sizeof(float)) {
        rc = err_set(ERR_CORRUPT, "%s holds %.0f bytes but this model needs %zu", path, bytes->valuedouble,
                     n * sizeof(float));
    } else {
        FILE *fp = fopen(path, "rb");
        size_t got = fp ? fread(x, sizeof(float), n, fp) : 0;
        if (fp) fclose(fp);
        char hex[SHA256_HEX_LEN + 1];
        if (got != n) rc = err_set(ERR_CORRUPT, "%s is truncated or unreadable (%zu of %zu floats)", path, got, n);
        else {
            sha256_hex(hex, x, n * sizeof(float));
            if (strcmp(hex, sha->valuestring)) rc = err_set(ERR_CORRUPT, "%s does not match its sha256 in state.json", path);
        }
    }
    free(path);
    return rc;
}

static int64_t get_i64(const cJSON *j, const char *k, int *bad) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 0x1p62)) { /* the cast stays defined */
        *bad = 1;
        return 0;
    }
    return (int64_t)v->valuedouble;
}

int state_load(const char *dir, train_progress *p, model *m, optimizer *o, float *best, const char *fingerprint) {
    int64_t step = state_newest(dir);
    if (step < 0) return 0;
    char *sub = xasprintf("%s/step-%09lld", dir, (long long)step), *sp = sub ? fs_join(sub, "state.json") : NULL;
    char *text = NULL;
    size_t len;
    cJSON *j = NULL;
    int rc = (!sub || !sp) ? -1 : fs_read_file(sp, 1 << 20, &text, &len);
    if (!rc && !(j = cJSON_Parse(text))) rc = err_set(ERR_CORRUPT, "%s is not JSON", sp);
    int bad = 0;
    const cJSON *fp = j ? cJSON_GetObjectItemCaseSensitive(j, "fingerprint") : NULL;
    const cJSON *rng = j ? cJSON_GetObjectItemCaseSensitive(j, "rng") : NULL;
    if (!rc && (get_i64(j, "version", &bad) != STATE_VERSION || bad))
        rc = err_set(ERR_CORRUPT, "%s: unknown checkpoint version", sp);
    if (!rc && (!cJSON_IsString(fp) || strcmp(fp->valuestring, fingerprint)))
        rc = err_set(ERR_CORRUPT, "%s was written for another configuration (%s), not %s", sp,
                     cJSON_IsString(fp) ? fp->valuestring : "?", fingerprint);
    if (!rc) {
        const cJSON *files = cJSON_GetObjectItemCaseSensitive(j, "files");
        const size_t n = m->w.n_floats;
        rc = read_floats(sub, files, "params.bin", m->w.mem, n) || read_floats(sub, files, "adam_m.bin", o->m.mem, n) ||
             read_floats(sub, files, "adam_v.bin", o->v.mem, n);
        p->step = get_i64(j, "step", &bad);
        o->step = (long)get_i64(j, "optimizer_step", &bad);
        p->cursor.epoch = get_i64(j, "epoch", &bad);
        p->cursor.index = get_i64(j, "index", &bad);
        p->tokens_seen = get_i64(j, "tokens_seen", &bad);
        p->best_step = get_i64(j, "best_step", &bad);
        p->have_best = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "have_best"));
        const cJSON *bl = cJSON_GetObjectItemCaseSensitive(j, "best_loss");
        char *end = NULL;
        p->best_loss = cJSON_IsString(bl) ? strtod(bl->valuestring, &end) : 0;
        if (!end || *end) bad = 1;
        if (!cJSON_IsString(rng) || sscanf(rng->valuestring, "%" SCNx64, &p->rng) != 1) bad = 1;
        if (!rc && bad) rc = err_set(ERR_CORRUPT, "%s lacks a field of the training state", sp);
        if (!rc && best && p->have_best) rc = read_floats(sub, files, "best.bin", best, n);
    }
    if (rc) err_prefix("resuming from the in-stage checkpoint %s (delete that folder to start this stage over): ",
                       sub ? sub : dir);
    cJSON_Delete(j);
    free(text), free(sp), free(sub);
    return rc ? -1 : 1;
}
