/* optim.h: the optimizer of a model: AdamW (torch.optim.AdamW arithmetic, kernels/adamw.h) with a
 * learning-rate schedule, global gradient-norm clipping and a choice of which tensors decay. The
 * moments use the parameters' layout (one allocation each), so saving the optimizer state is
 * saving two weight buffers and the step count. */
#ifndef SMELT_MODEL_OPTIM_H
#define SMELT_MODEL_OPTIM_H

#include "kernels/adamw.h"
#include "kernels/schedule.h"
#include "model/model.h"

typedef struct {
    double beta1, beta2, eps, weight_decay; /* 0.9, 0.999, 1e-8, 0.0 are torch's defaults */
    lr_schedule schedule;                  /* schedule.lr is the peak learning rate */
    double clip;                           /* max global gradient norm; 0: no clipping */
    int decay_all;                         /* 1: weight decay on every tensor (torch with one parameter
                                            * group); 0: on matrices only, not on norms and biases */
} optim_config;

typedef struct {
    long off, len; /* a run of floats of the layout sharing one decay flag */
    int decay;
} optim_range;

typedef struct {
    optim_config cfg;
    model_weights m, v;     /* first and second moments (zero at the start) */
    long step;              /* optimizer steps taken */
    double last_lr;         /* learning rate of the last step */
    double last_grad_norm;  /* global gradient norm before clipping, of the last step */
    optim_range *ranges;
    int n_ranges;
} optimizer;

/* Allocates the moments for md's layout. 0 or -1. */
int optim_init(optimizer *o, const model *md, const optim_config *c);
void optim_free(optimizer *o);
/* One step from md->grad: global norm (and clipping), the schedule's lr for this step, AdamW on
 * every parameter. Clipping scales the gradients as AdamW reads them; md->grad itself is left
 * unchanged (unclipped); call model_zero_grad before the next accumulation. A NaN or infinite gradient norm stops before any parameter changes: -1 with
 * ERR_STAGE naming the step. */
int optim_step(optimizer *o, model *md);

#endif
