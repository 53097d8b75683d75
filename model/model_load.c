/* model_load.c: the one model loader (see model_load.h). */
#include "model/model_load.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/strbuf.h"
#include "model/checkpoint.h"
#include "model/gguf.h"
#include "model/qmodel.h"

char *model_gguf_path(const char *path) {
    if (!fs_is_dir(path)) return gguf_sniff(path) ? xstrdup(path) : NULL;
    char *cfg = fs_join(path, "config.json"), *g = fs_join(path, "model.gguf");
    const int use = cfg && g && !fs_exists(cfg) && gguf_sniff(g);
    free(cfg);
    if (!use) free(g);
    return use ? g : NULL;
}

int model_path_is_quantized(const char *path, qckpt_format *f, char *desc, size_t desc_len) {
    char *g = model_gguf_path(path);
    if (!g) return qcheckpoint_probe(path, f, desc, desc_len);
    const int marked = qcheckpoint_gguf_marked(g);
    free(g);
    if (marked > 0) {
        if (f) *f = QCKPT_GGUF;
        if (desc && desc_len) snprintf(desc, desc_len, "gguf (quantized by smelt)");
    }
    return marked;
}

/* model_init over cfg and w, then q attached (q may be NULL). On failure everything is freed. */
static int init_attach(model *m, const model_config *cfg, model_weights *w, model_quant *q, const char *path) {
    if (model_init(m, cfg, w)) {
        weights_free(w);
        model_quant_free(q);
        return err_prefix("loading %s: ", path);
    }
    if (q && model_attach_quant(m, q)) {
        model_quant_free(q);
        model_free(m);
        return err_prefix("loading %s: ", path);
    }
    return 0;
}

int model_load_quantized_gguf(model *m, const char *path) {
    memset(m, 0, sizeof *m);
    char *g = model_gguf_path(path);
    if (!g) return err_set(ERR_INPUT, "%s is not a GGUF file (nor a folder holding model.gguf)", path);
    model_config cfg;
    model_weights w;
    model_quant *q = NULL;
    const int rc = qcheckpoint_load_gguf(g, &cfg, &w, &q) ? -1 : init_attach(m, &cfg, &w, q, g);
    free(g);
    return rc;
}

int model_load(model *m, const char *path) {
    memset(m, 0, sizeof *m);
    char *g = model_gguf_path(path);
    if (g) { /* smelt's quantized GGUF files load quantized, others dense (gguf_model.c) */
        const int marked = qcheckpoint_gguf_marked(g);
        int rc = marked < 0 ? -1 : 0;
        if (!rc && marked) rc = model_load_quantized_gguf(m, g);
        else if (!rc) {
            model_config cfg;
            model_weights w;
            rc = checkpoint_load(g, &cfg, &w) ? err_prefix("loading %s: ", g) : init_attach(m, &cfg, &w, NULL, g);
        }
        free(g);
        return rc;
    }
    model_config cfg;
    model_weights w;
    model_quant *q = NULL;
    qckpt_format f;
    char desc[96];
    const int quantized = qcheckpoint_probe(path, &f, desc, sizeof desc);
    if (quantized < 0) return err_prefix("loading %s: ", path);
    if (quantized ? qcheckpoint_load(path, &cfg, &w, &q) : checkpoint_load(path, &cfg, &w))
        return quantized ? -1 : err_prefix("loading %s: ", path);
    return init_attach(m, &cfg, &w, q, path);
}
