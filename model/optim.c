/* optim.c: AdamW over a model's layout with schedule, clipping and decay ranges (see optim.h). */
#include "model/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/profile.h"
#include "kernels/threads.h"
#include "model/model_internal.h"

int optim_init(optimizer *o, const model *md, const optim_config *c) {
    memset(o, 0, sizeof *o);
    o->cfg = *c;
    if (weights_alloc(&o->m, &md->cfg) || weights_alloc(&o->v, &md->cfg)) {
        optim_free(o);
        return err_prefix("optimizer moments: ");
    }
    int nt = weights_tensors(&md->w, &md->cfg, NULL, 0);
    weights_tensor *t = xmalloc(sizeof *t * (size_t)nt);
    o->ranges = xmalloc(sizeof *o->ranges * (size_t)nt);
    if (!t || !o->ranges) {
        free(t);
        optim_free(o);
        return -1;
    }
    weights_tensors(&md->w, &md->cfg, t, nt);
    /* tensors in layout order; adjacent ones with the same decay flag merge into one range */
    for (int i = 0; i < nt; i++) {
        long off = (long)(t[i].data - md->w.mem), len = (long)t[i].shape[0] * (t[i].ndim == 2 ? (long)t[i].shape[1] : 1);
        int decay = c->decay_all || t[i].ndim == 2;
        optim_range *last = o->n_ranges ? &o->ranges[o->n_ranges - 1] : NULL;
        if (last && last->decay == decay && last->off + last->len == off) last->len += len;
        else o->ranges[o->n_ranges++] = (optim_range){off, len, decay};
    }
    free(t);
    return 0;
}

void optim_free(optimizer *o) {
    weights_free(&o->m);
    weights_free(&o->v);
    free(o->ranges);
    memset(o, 0, sizeof *o);
}

static int optim_step_inner(optimizer *o, model *md);

/* On one thread when the model's training step is small (model_forward's kernels_call_begin). */
int optim_step(optimizer *o, model *md) {
    int rc;
    const int cap = kernels_call_begin(md->acts ? md->acts->call_macs : THR_CALL_MACS);
    PROF(PROF_OPTIM, rc = optim_step_inner(o, md));
    kernels_cap_threads(cap);
    return rc;
}

static int optim_step_inner(optimizer *o, model *md) {
    if (!md->grad.mem) return err_set(ERR_INPUT, "optimizer step without gradients; call model_reserve_train first");
    double norm = clip_grad_norm(md->grad.mem, md->grad.n_floats, 0);
    o->last_grad_norm = norm;
    if (!isfinite(norm))
        return err_set(ERR_STAGE, "the gradient norm is %s at optimizer step %ld; parameters were not updated (lower "
                       "the learning rate or check the data)", isnan(norm) ? "NaN" : "infinite", o->step + 1);
    /* clipping scales the gradient inside the update (the same fp32 product torch's in-place
     * scaling makes), saving a pass over the gradients */
    const float scale = o->cfg.clip > 0 && norm > o->cfg.clip ? (float)(o->cfg.clip / (norm + 1e-6)) : 1.0f;
    adamw_hparams h = {.lr = lr_schedule_at(&o->cfg.schedule, o->step), .beta1 = o->cfg.beta1,
                       .beta2 = o->cfg.beta2, .eps = o->cfg.eps, .weight_decay = o->cfg.weight_decay};
    o->step++;
    o->last_lr = h.lr;
    for (int r = 0; r < o->n_ranges; r++) {
        const optim_range *g = &o->ranges[r];
        adamw_update(md->w.mem + g->off, o->m.mem + g->off, o->v.mem + g->off, md->grad.mem + g->off, scale, (size_t)g->len, &h,
                     o->step, g->decay);
    }
    return 0;
}
