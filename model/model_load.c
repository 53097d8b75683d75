/* model_load.c: the one model loader (see model_load.h). */
#include "model/model_load.h"

#include <string.h>

#include "common/error.h"
#include "model/checkpoint.h"
#include "model/qmodel.h"

int model_path_is_quantized(const char *path, qckpt_format *f, char *desc, size_t desc_len) {
    return qcheckpoint_probe(path, f, desc, desc_len);
}

int model_load(model *m, const char *path) {
    memset(m, 0, sizeof *m);
    model_config cfg;
    model_weights w;
    model_quant *q = NULL;
    qckpt_format f;
    char desc[96];
    const int quantized = qcheckpoint_probe(path, &f, desc, sizeof desc);
    if (quantized < 0) return err_prefix("loading %s: ", path);
    if (quantized ? qcheckpoint_load(path, &cfg, &w, &q) : checkpoint_load(path, &cfg, &w))
        return quantized ? -1 : err_prefix("loading %s: ", path);
    if (model_init(m, &cfg, &w)) {
        weights_free(&w);
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
