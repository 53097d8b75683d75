/* qout.c: the output of the `quantize` stage (see qout.h): the quantized checkpoint written by
 * model/qcheckpoint.h's qcheckpoint_save in the asked format (the dense tensors in float32: exactly the
 * weights smelt evaluated), the input model's tokenizer files, and the totals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "model/checkpoint.h"
#include "model/tokenizer.h"
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

/* *bpw = 8 x the bytes the written file spends on the quantized linears (every tensor of theirs, in
 * the output format: codes, scales, zero points, shapes, g_idx; GGUF blocks) / their weights; 32
 * when nothing is quantized. 0 or -1. */
static int bits_per_weight(double *bpw, const qrun *qr) {
    double qbytes = 0, qweights = 0;
    for (int l = 0; l < qr->m.cfg.n_layers; l++)
        for (int k = 0; k < QLIN_N; k++) {
            const qweight *q = model_quant_at(qr->mq, l, k);
            size_t b;
            if (!qweight_is_set(q)) continue;
            if (qcheckpoint_linear_bytes(&b, q, qr->o.format)) return -1;
            qbytes += (double)b;
            qweights += (double)q->n_out * q->n_in;
        }
    *bpw = qweights > 0 ? 8.0 * qbytes / qweights : 32.0;
    return 0;
}

/* format gguf: dir/model.gguf (what model_load reads for the folder) with the input model's tokenizer
 * inside when it has a GGUF form (llama.cpp then runs the file alone); a tokenizer without one (a
 * custom pre-tokenizer, builtin:bytes) is left out with a warning (its files are copied beside). */
static int write_gguf(const char *dir, qrun *qr, const char *model_path) {
    tokenizer *tok = NULL;
    if ((fs_is_dir(model_path) || checkpoint_detect(model_path) == CKPT_GGUF) && tokenizer_load(&tok, model_path)) {
        log_warn("model.gguf without a tokenizer: %s", err_msg());
        err_clear();
    }
    char *path = fs_join(dir, "model.gguf");
    int rc = !path || fs_mkdir_p(dir, 0755) ? -1 : qcheckpoint_save_gguf(path, &qr->m.cfg, &qr->m.w, qr->mq, tok, NULL);
    if (rc && path && tok) { /* the file is written whole or not at all: again without the tokenizer */
        log_warn("model.gguf without a tokenizer: %s", err_msg());
        err_clear();
        rc = qcheckpoint_save_gguf(path, &qr->m.cfg, &qr->m.w, qr->mq, NULL, NULL);
    }
    tokenizer_free(tok);
    free(path);
    return rc;
}

int qout_write(const char *dir, qrun *qr, const char *model_path) {
    if (qr->o.format == QCKPT_GGUF ? write_gguf(dir, qr, model_path)
                                   : qcheckpoint_save(dir, &qr->m.cfg, &qr->m.w, qr->mq, qr->o.format, ST_F32))
        return err_prefix("saving the quantized model: ");
    if (copy_tokenizer(dir, model_path)) return -1;
    double bpw;
    int rc = stage_metric(qr->ctx, "bytes", 0, (double)model_weight_bytes(&qr->m)) || bits_per_weight(&bpw, qr) ||
             stage_metric(qr->ctx, "bits_per_weight", 0, bpw);
    if (!rc && qr->n_err) rc = stage_metric(qr->ctx, "rel_error_mean", 0, qr->sum_err_rel / qr->n_err);
    return rc;
}
