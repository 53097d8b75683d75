/* qmodel.h: a model whose linear layers are quantized. A model_quant holds one qweight
 * (kernels/qweight.h) per Hugging Face linear of every layer (q, k, v, o, gate, up, down) and
 * optionally the LM head; a linear whose qweight has no codes stays fp32. Attached to a model, it
 * is owned by the model (model_free frees it) and the model's forward descriptors run the quantized
 * kernels (kernels/qlinear.h): the fused q/k/v and gate/up descriptors stack the parts' rows, which
 * needs the parts of one fused projection quantized alike (same type, bits, activations and group
 * size) or all left fp32. Embeddings, norms and biases stay fp32 in the model's weights; the fp32
 * weights of the quantized linears are zeros that nothing reads (one calloc: their pages are never
 * touched, so they cost address space, not memory).
 *
 * The quantize stage fills a model_quant layer by layer (model_quant_new, then the qweights of
 * model_quant_at), attaches it, and after changing layer l's qweights calls model_quant_rebind_layer
 * so that the calibration forward of the next layer runs through the quantized layer. */
#ifndef SMELT_MODEL_QMODEL_H
#define SMELT_MODEL_QMODEL_H

#include <stddef.h>

#include "common/strbuf.h"
#include "kernels/qlinear.h"
#include "kernels/qweight.h"
#include "model/model.h"

/* The seven linears of a decoder layer, in the order of the weight layout. */
typedef enum { QLIN_Q, QLIN_K, QLIN_V, QLIN_O, QLIN_GATE, QLIN_UP, QLIN_DOWN, QLIN_N } qlin_kind;

/* "self_attn.q_proj", ..., "mlp.down_proj" (Hugging Face module names inside a layer). */
extern const char *const qlin_module[QLIN_N];
/* "q", "k", "v", "o", "gate", "up", "down" (metric families). */
extern const char *const qlin_short[QLIN_N];

typedef struct model_quant {
    int n_layers;
    qweight lin[MODEL_MAX_LAYERS][QLIN_N]; /* codes == NULL: this linear stays fp32 */
    qweight lm_head;                       /* codes == NULL: fp32 (the usual choice) */
    /* kernel payloads bound to the model's descriptors (qkv, o, gate_up, down), NULL where fp32 */
    qlinear *bound[MODEL_MAX_LAYERS][4];
    qlinear *bound_head;
} model_quant;

/* An empty model_quant for n_layers layers (every linear fp32). NULL with ERR_NOMEM. */
model_quant *model_quant_new(int n_layers);
/* Frees the qweights and payloads, then q itself (NULL is fine). */
void model_quant_free(model_quant *q);
/* The qweight of linear `k` of layer l (k == QLIN_N: the LM head). */
qweight *model_quant_at(model_quant *q, int layer, int k);
/* 1 when the qweight holds codes (the linear is quantized). */
static inline int qweight_is_set(const qweight *w) { return w->codes != NULL; }

/* "model.layers.<l>.<module>", or "lm_head" for k == QLIN_N: the Hugging Face module name. */
void qlin_module_name(char *buf, size_t n, int layer, int k);
/* The [n_out, n_in] shape of linear k of layer l in cfg (k == QLIN_N: the LM head). */
void qlin_shape(const model_config *cfg, int layer, int k, int *n_out, int *n_in);

/* Checks every set qweight against the shapes of cfg and the fused-projection rule, builds the
 * kernel payloads and binds m's descriptors to them; m then owns q. On failure m is unchanged and
 * q is still the caller's. 0 or -1 (ERR_INPUT naming the layer and linear). */
int model_attach_quant(model *m, model_quant *q);
/* Rebuilds the payloads of layer l from m->quant's qweights and rebinds its descriptors (after the
 * quantize stage changed them). 0 or -1. */
int model_quant_rebind_layer(model *m, int l);
/* Points the descriptors at the attached payloads (model_bind_linears calls it after binding the
 * fp32 descriptors; nothing to do without m->quant). */
void model_quant_bind(model *m);
/* Appends a summary of q's linears to out, e.g. "14 int4 group 8 symmetric, fp32 activations; 1 fp32
 * (lm_head)". 0 or -1 (ERR_NOMEM). */
int model_quant_summary(strbuf *out, const model_quant *q);
/* One qweight's scheme in words ("int8 per channel asymmetric, int8 activations per token"). */
void qweight_describe(char *buf, size_t n, const qweight *w);
/* 1 when the model runs some quantized linear. */
int model_is_quantized(const model *m);
/* Bytes of the model's weights as a serving engine holds them: fp32 tensors at 4 bytes per value
 * except the quantized linears, counted at qweight_packed_bytes. */
size_t model_weight_bytes(const model *m);

#endif
