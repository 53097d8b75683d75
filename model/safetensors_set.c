/* safetensors_set.c: one checkpoint's tensors across one file or the shards named by a
 * model.safetensors.index.json (weight_map). Every listed tensor must be in its shard and no
 * name may appear twice; the lookup is one sorted array over all files. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/strbuf.h"
#include "common/log.h"
#include "model/safetensors.h"

#define INDEX_MAX_BYTES (64u << 20) /* an index of a million tensors is ~100 MB; real ones are < 1 MB */
#define SET_MAX_FILES 4096

typedef struct {
    const st_tensor *t;
    int file;
} tensor_ref;

static int cmp_ref(const void *a, const void *b) {
    return strcmp(((const tensor_ref *)a)->t->name, ((const tensor_ref *)b)->t->name);
}

static int add_file(st_set *s, const char *base) {
    for (int i = 0; i < s->n_files; i++)
        if (!strcmp(s->file_names[i], base)) return i;
    if (s->n_files >= SET_MAX_FILES)
        return err_set(ERR_INPUT, "%s: more than %d shard files; not supported", s->dir, SET_MAX_FILES);
    if (!base[0] || strchr(base, '/') || !strcmp(base, ".") || !strcmp(base, ".."))
        return err_set(ERR_CORRUPT, "%s: the index names shard '%s', which is not a plain file name in the "
                       "index's folder; fix the index's weight_map", s->dir, base);
    st_file *nf = xrealloc(s->files, (size_t)(s->n_files + 1) * sizeof *nf);
    if (!nf) return -1;
    s->files = nf;
    char **nn = xrealloc(s->file_names, (size_t)(s->n_files + 1) * sizeof *nn);
    if (!nn) return -1;
    s->file_names = nn;
    char *full = fs_join(s->dir, base);
    if (!full) return -1;
    int rc = st_open(&s->files[s->n_files], full);
    free(full);
    if (rc) return -1;
    s->file_names[s->n_files] = xstrdup(base);
    if (!s->file_names[s->n_files]) {
        st_close(&s->files[s->n_files]);
        return -1;
    }
    return s->n_files++;
}

/* Builds the sorted name -> tensor table over all files; duplicates are an error. */
static int build_table(st_set *s) {
    int total = 0;
    for (int i = 0; i < s->n_files; i++) total += s->files[i].n_tensors;
    tensor_ref *refs = xcalloc((size_t)total + 1, sizeof *refs);
    s->tensors = xcalloc((size_t)total + 1, sizeof *s->tensors);
    s->tensor_file = xcalloc((size_t)total + 1, sizeof *s->tensor_file);
    if (!refs || !s->tensors || !s->tensor_file) {
        free(refs);
        return -1;
    }
    int n = 0;
    for (int i = 0; i < s->n_files; i++)
        for (int k = 0; k < s->files[i].n_tensors; k++) refs[n++] = (tensor_ref){&s->files[i].tensors[k], i};
    qsort(refs, (size_t)n, sizeof *refs, cmp_ref);
    int rc = 0;
    for (int t = 0; t < n && !rc; t++) {
        s->tensors[t] = refs[t].t;
        s->tensor_file[t] = refs[t].file;
        if (t > 0 && !strcmp(refs[t - 1].t->name, refs[t].t->name))
            rc = err_set(ERR_CORRUPT, "%s: tensor '%s' is in both %s and %s; the shards are from different saves",
                         s->dir, refs[t].t->name, s->file_names[refs[t - 1].file], s->file_names[refs[t].file]);
    }
    s->n_tensors = n;
    free(refs);
    return rc;
}

static int open_index(st_set *s, const char *index_path) {
    char *text = NULL;
    size_t len = 0;
    if (fs_read_file(index_path, INDEX_MAX_BYTES, &text, &len)) return -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    int rc = 0;
    const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!root || !cJSON_IsObject(root)) {
        rc = err_set(ERR_CORRUPT, "%s is not a JSON object; expected {\"weight_map\": {tensor: shard file}}", index_path);
        goto done;
    }
    if (!cJSON_IsObject(map)) {
        rc = err_set(ERR_CORRUPT, "%s has no \"weight_map\" object (tensor name -> shard file name)", index_path);
        goto done;
    }
    for (const cJSON *e = map->child; e && !rc; e = e->next) {
        if (!cJSON_IsString(e)) {
            rc = err_set(ERR_CORRUPT, "%s: weight_map entry '%s' is not a file name string", index_path, e->string);
            break;
        }
        int fi = add_file(s, e->valuestring);
        if (fi < 0) {
            err_prefix("%s: ", index_path);
            rc = -1;
            break;
        }
        if (!st_find(&s->files[fi], e->string))
            rc = err_set(ERR_CORRUPT, "%s lists tensor '%s' in %s, but that shard has no such tensor; the index and "
                         "the shards are from different saves", index_path, e->string, e->valuestring);
    }
    if (!rc && s->n_files == 0)
        rc = err_set(ERR_CORRUPT, "%s: weight_map is empty; no shard to load", index_path);
    /* tensors in a shard but not in the index still load (as transformers does), with a warning */
    for (int i = 0; i < s->n_files && !rc; i++)
        for (int k = 0; k < s->files[i].n_tensors; k++) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(map, s->files[i].tensors[k].name);
            if (!e) log_warn("%s: tensor '%s' in %s is not listed in the index", index_path,
                             s->files[i].tensors[k].name, s->file_names[i]);
        }
done:
    cJSON_Delete(root);
    return rc;
}

int st_set_open(st_set *s, const char *path) {
    memset(s, 0, sizeof *s);
    int rc = 0;
    char *index = NULL, *single = NULL;
    if (fs_is_dir(path)) {
        s->dir = xstrdup(path);
        single = fs_join(path, "model.safetensors");
        index = fs_join(path, "model.safetensors.index.json");
        if (!s->dir || !single || !index) rc = -1;
        else if (fs_exists(single)) rc = add_file(s, "model.safetensors") < 0 ? -1 : 0;
        else if (fs_exists(index)) rc = open_index(s, index);
        else
            rc = err_set(ERR_INPUT, "%s holds neither model.safetensors nor model.safetensors.index.json; point smelt "
                         "at a Hugging Face model folder", path);
    } else if (!fs_exists(path)) {
        rc = err_set(ERR_INPUT, "%s does not exist", path);
    } else {
        s->dir = fs_dir_of(path);
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        if (!s->dir) rc = -1;
        else if (str_ends_with(path, ".json")) rc = open_index(s, path);
        else rc = add_file(s, base) < 0 ? -1 : 0;
    }
    if (!rc) rc = build_table(s);
    free(index);
    free(single);
    if (rc) st_set_close(s);
    return rc;
}

void st_set_close(st_set *s) {
    for (int i = 0; i < s->n_files; i++) {
        st_close(&s->files[i]);
        free(s->file_names[i]);
    }
    free(s->files);
    free(s->file_names);
    free(s->tensors);
    free(s->tensor_file);
    free(s->dir);
    memset(s, 0, sizeof *s);
}

const st_tensor *st_set_find(const st_set *s, const char *name, int *file) {
    int lo = 0, hi = s->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(s->tensors[mid]->name, name);
        if (!c) {
            if (file) *file = s->tensor_file[mid];
            return s->tensors[mid];
        }
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}
