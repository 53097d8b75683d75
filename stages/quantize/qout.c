/* qout.c: the output of the `quantize` stage (see qout.h).
 * INTERIM until the quantized checkpoint writer (compressed-tensors, GPTQ, GGUF) lands: the folder
 * holds the model with every quantized linear replaced by the values of its codes (float32, loadable
 * everywhere: the weights smelt evaluated) and quantization.json, which records the scheme and, per
 * linear, whether it was quantized. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "model/checkpoint.h"
#include "stages/quantize/qout.h"

/* The tokenizer files a Hugging Face folder may hold (copied when present). */
static const char *const tokenizer_files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                              "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json",
                                              "chat_template.jinja", NULL};

static int copy_tokenizer(const char *dir, const char *model_path) {
    if (!fs_is_dir(model_path)) return 0;
    for (int i = 0; tokenizer_files[i]; i++) {
        char *src = fs_join(model_path, tokenizer_files[i]), *dst = fs_join(dir, tokenizer_files[i]);
        int rc = !src || !dst ? -1 : fs_exists(src) ? fs_copy_file(dst, src) : 0;
        free(src), free(dst);
        if (rc) return err_prefix("copying the tokenizer: ");
    }
    return 0;
}

static int totals(qrun *qr, double *bytes, double *bpw) {
    const model_config *c = &qr->m.cfg;
    double qbytes = 0, qweights = 0, float_params = (double)model_n_params(c);
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < LIN_N; k++)
            if (qr->lin[l][k].quantized) {
                const qweight *q = &qr->lin[l][k].q;
                qbytes += (double)qweight_packed_bytes(q);
                qweights += (double)q->n_out * q->n_in;
                float_params -= (double)q->n_out * q->n_in;
            }
    *bytes = qbytes + 4.0 * float_params; /* the rest is stored as float32 */
    *bpw = qweights > 0 ? 8.0 * qbytes / qweights : 32.0;
    return 0;
}

int qout_write(const char *dir, qrun *qr, const char *model_path) {
    const qopts *o = &qr->o;
    if (checkpoint_save(dir, &qr->m.cfg, &qr->m.w, ST_F32)) return err_prefix("saving the quantized model: ");
    if (copy_tokenizer(dir, model_path)) return -1;
    cJSON *j = cJSON_CreateObject(), *lin = cJSON_AddArrayToObject(j, "quantized");
    const char *method = o->method == QM_RTN ? "rtn" : o->method == QM_GPTQ ? "gptq" : o->method == QM_QUANTEASE ? "quantease" : "fp8";
    cJSON_AddStringToObject(j, "method", method);
    cJSON_AddBoolToObject(j, "smoothquant", o->smooth);
    cJSON_AddNumberToObject(j, "bits", o->method == QM_FP8 ? 8 : o->grid.bits);
    cJSON_AddNumberToObject(j, "group_size", o->grid.group_size);
    cJSON_AddBoolToObject(j, "sym", o->grid.sym);
    cJSON_AddStringToObject(j, "activations", o->act == QA_INT8 ? "int8" : o->act == QA_FP8 ? "fp8" : o->act == QA_FP8_TENSOR ? "fp8_tensor" : "none");
    cJSON_AddStringToObject(j, "format_requested", o->format);
    cJSON_AddStringToObject(j, "weights", "dequantized float32 (interim: the quantized writer is not in yet)");
    for (int l = 0; l < qr->m.cfg.n_layers; l++)
        for (int k = 0; k < LIN_N; k++)
            if (qr->lin[l][k].quantized) {
                char name[96];
                snprintf(name, sizeof name, "model.layers.%d.%s", l, lin_module[k]);
                cJSON_AddItemToArray(lin, cJSON_CreateString(name));
            }
    char *text = cJSON_Print(j), *path = fs_join(dir, "quantization.json");
    int rc = !text || !path ? err_set(ERR_NOMEM, "out of memory") : fs_write_atomic(path, text, strlen(text));
    cJSON_Delete(j);
    free(text), free(path);
    double bytes, bpw;
    if (!rc) rc = totals(qr, &bytes, &bpw);
    if (!rc) rc = stage_metric(qr->ctx, "bytes", 0, bytes) || stage_metric(qr->ctx, "bits_per_weight", 0, bpw);
    if (!rc && qr->n_err) rc = stage_metric(qr->ctx, "rel_error_mean", 0, qr->sum_err_rel / qr->n_err);
    return rc;
}
