/* loss.cu: row softmax, weighted cross-entropy and the distillation divergences over rows of
 * logits (the CUDA twins of kernels/softmax.c and kernels/distill.c; the formulas are in their
 * headers). One block per row; the sums of exponentials are per-thread fp32 partials combined in
 * fp64 across the block, the divergences are summed in fp64, in a fixed order.
 * Shapes: x, y, logits, dlogits, zs, zt [n, dim or vocab]; losses, targets, weights, row_w [n]. */
#include "kernels/cuda/cu_common.cuh"

#define LOSS_THREADS 256

template <typename T> __global__ void __launch_bounds__(LOSS_THREADS) softmax_fwd_kernel(T *out, const T *x, int dim) {
    __shared__ float redf[32];
    __shared__ double redd[32];
    const size_t o = (size_t)blockIdx.x * dim;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) mx = fmaxf(mx, cu_f(x[o + j]));
    mx = block_max(mx, redf);
    float s = 0;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) s += expf(cu_f(x[o + j]) - mx);
    const float inv = (float)(1.0 / block_sum((double)s, redd));
    for (int j = threadIdx.x; j < dim; j += blockDim.x) out[o + j] = cu_to<T>(expf(cu_f(x[o + j]) - mx) * inv);
}

template <typename T>
__global__ void __launch_bounds__(LOSS_THREADS) softmax_bwd_kernel(T *dx, const T *y, const T *dy, int dim) {
    __shared__ double redd[32];
    const size_t o = (size_t)blockIdx.x * dim;
    float dot = 0;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) dot += cu_f(y[o + j]) * cu_f(dy[o + j]);
    const float d = (float)block_sum((double)dot, redd);
    for (int j = threadIdx.x; j < dim; j += blockDim.x) dx[o + j] = cu_to<T>(cu_f(y[o + j]) * (cu_f(dy[o + j]) - d));
}

int cu_softmax_forward(cu_ctx *c, void *out, const void *x, int n, int dim, cu_dtype dt) {
    if (n <= 0 || dim <= 0) return 0;
    CU_DISPATCH(dt, T, CU_LAUNCH(n, LOSS_THREADS, 0, c->stream, softmax_fwd_kernel<T>)((T *)out, (const T *)x, dim));
    CU_LAUNCHED("softmax forward");
    return 0;
}

int cu_softmax_backward(cu_ctx *c, void *dx, const void *y, const void *dy, int n, int dim, cu_dtype dt) {
    if (n <= 0 || dim <= 0) return 0;
    CU_DISPATCH(dt, T,
                CU_LAUNCH(n, LOSS_THREADS, 0, c->stream, softmax_bwd_kernel<T>)((T *)dx, (const T *)y, (const T *)dy, dim));
    CU_LAUNCHED("softmax backward");
    return 0;
}

/* dlogits may alias logits: every read of the row (z[t] too) happens before the block's barriers,
 * every write after them. */
template <typename T>
__global__ void __launch_bounds__(LOSS_THREADS) cross_entropy_kernel(float *losses, T *dlogits, const T *logits,
                                                                     const int *targets, const float *weights, int vocab) {
    __shared__ float redf[32];
    __shared__ double redd[32];
    const int i = blockIdx.x, t = targets[i];
    const size_t o = (size_t)i * vocab;
    if (t < 0) { /* ignored row: loss 0, zero gradient */
        if (threadIdx.x == 0) losses[i] = 0;
        if (dlogits)
            for (int j = threadIdx.x; j < vocab; j += blockDim.x) dlogits[o + j] = cu_to<T>(0.0f);
        return;
    }
    const float w = weights ? weights[i] : 1.0f, zt = cu_f(logits[o + t]);
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) mx = fmaxf(mx, cu_f(logits[o + j]));
    mx = block_max(mx, redf);
    float s = 0;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) s += expf(cu_f(logits[o + j]) - mx);
    const double sum = block_sum((double)s, redd);
    if (threadIdx.x == 0) losses[i] = (float)(w * ((double)mx + log(sum) - zt));
    if (!dlogits) return;
    const float scale = (float)(w / sum);
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
        const float e = expf(cu_f(logits[o + j]) - mx) * scale;
        dlogits[o + j] = cu_to<T>(j == t ? e - w : e);
    }
}

int cu_cross_entropy(cu_ctx *c, float *losses, void *dlogits, const void *logits, const int *targets,
                     const float *weights, int n, int vocab, cu_dtype dt) {
    if (n <= 0) return 0;
    CU_DISPATCH(dt, T,
                CU_LAUNCH(n, LOSS_THREADS, 0, c->stream, cross_entropy_kernel<T>)(losses, (T *)dlogits, (const T *)logits,
                                                                                 targets, weights, vocab));
    CU_LAUNCHED("cross-entropy");
    return 0;
}

/* max over the row and log sum exp((x - max) / T) (the CPU's row_lse) */
template <typename T>
__device__ void row_lse(const T *x, int v, float inv_t, float *mx_out, float *lse_out, float *redf, double *redd) {
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < v; j += blockDim.x) mx = fmaxf(mx, cu_f(x[j]));
    mx = block_max(mx, redf);
    float s = 0;
    for (int j = threadIdx.x; j < v; j += blockDim.x) s += expf((cu_f(x[j]) - mx) * inv_t);
    *mx_out = mx;
    *lse_out = (float)log(block_sum((double)s, redd));
}

/* The effective weights of the CPU's distill_row: JSD at b = 0 or 1 is FKL or RKL (the paper's and
 * FMCHISEL's convention) and joins their weights; the mixture terms only for 0 < b < 1. */
struct distill_eff {
    float f, r, j;
};
static distill_eff distill_effective(const distill_mix *mx) {
    const float b = mx->beta, wj = mx->w_jsd > 0 ? mx->w_jsd : 0;
    distill_eff e = {(mx->w_fkl > 0 ? mx->w_fkl : 0) + (b <= 0 ? wj : 0), (mx->w_rkl > 0 ? mx->w_rkl : 0) + (b >= 1 ? wj : 0),
                     b > 0 && b < 1 ? wj : 0};
    return e;
}

template <typename T>
__global__ void __launch_bounds__(LOSS_THREADS) distill_kernel(double *terms, T *dlogits, const T *zs_all, int ld_s,
                                                               const T *zt_all, int ld_t, const float *row_w,
                                                               distill_mix mx, distill_eff e, int v) {
    __shared__ float redf[32];
    __shared__ double redd[32];
    const int i = blockIdx.x;
    const float w = row_w[i];
    double *tm = terms + DISTILL_TERMS * (size_t)i;
    if (w == 0) {
        if (threadIdx.x == 0)
            for (int k = 0; k < DISTILL_TERMS; k++) tm[k] = 0;
        return;
    }
    const T *zs = zs_all + (size_t)i * ld_s, *zt = zt_all + (size_t)i * ld_t;
    const float inv_t = 1.0f / mx.temperature, b = mx.beta, b1 = 1.0f - mx.beta;
    const int do_j = e.j > 0;
    float ms, ls, mt, lt;
    row_lse(zs, v, inv_t, &ms, &ls, redf, redd);
    row_lse(zt, v, inv_t, &mt, &lt, redf, redd);
    double fkl = 0, rkl = 0, kpm = 0, kqm = 0;
    for (int j = threadIdx.x; j < v; j += blockDim.x) {
        const float lq = (cu_f(zs[j]) - ms) * inv_t - ls, lp = (cu_f(zt[j]) - mt) * inv_t - lt;
        const float q = expf(lq), p = expf(lp);
        fkl += p * (lp - lq);
        rkl += q * (lq - lp);
        if (do_j) {
            const float lm = logf(b * p + b1 * q);
            kpm += p * (lp - lm);
            kqm += q * (lq - lm);
        }
    }
    fkl = block_sum(fkl, redd);
    rkl = block_sum(rkl, redd);
    if (do_j) {
        kpm = block_sum(kpm, redd);
        kqm = block_sum(kqm, redd);
    }
    const double t2 = (double)mx.temperature * mx.temperature;
    if (threadIdx.x == 0) {
        for (int k = 0; k < DISTILL_TERMS; k++) tm[k] = 0; /* TVD, SKL, SRKL: refused on the host */
        tm[DISTILL_FKL] = mx.w_fkl > 0 ? t2 * fkl : 0;
        tm[DISTILL_RKL] = mx.w_rkl > 0 ? t2 * rkl : 0;
        tm[DISTILL_JSD] = mx.w_jsd > 0 ? t2 * (b <= 0 ? fkl : b >= 1 ? rkl : b * kpm + b1 * kqm) : 0;
    }
    if (!dlogits) return;
    /* d/dz = (1/T) [e_f (q - p) + q (h - H)] scaled by the row weight and T^2: factor w T */
    const float hh = (float)(e.r * rkl + e.j * b1 * kqm), scale = w * mx.temperature;
    T *d = dlogits + (size_t)i * ld_s;
    for (int j = threadIdx.x; j < v; j += blockDim.x) {
        const float lq = (cu_f(zs[j]) - ms) * inv_t - ls, lp = (cu_f(zt[j]) - mt) * inv_t - lt;
        const float q = expf(lq), p = expf(lp), lm = do_j ? logf(b * p + b1 * q) : 0.0f;
        d[j] = cu_to<T>(cu_f(d[j]) + scale * (e.f * (q - p) + q * (e.r * (lq - lp) + e.j * b1 * (lq - lm) - hh)));
    }
}

int cu_distill_rows(cu_ctx *c, double *terms, void *dlogits, const void *zs, int ld_s, const void *zt, int ld_t,
                    const float *row_w, const distill_mix *mix, int n, int vocab, cu_dtype dt) {
    if (n <= 0) return 0;
    if (!(mix->temperature > 0))
        return err_set(ERR_INPUT, "distillation temperature %g: it must be > 0", (double)mix->temperature);
    if (vocab > ld_s || vocab > ld_t)
        return err_set(ERR_INPUT, "distillation: vocab %d is wider than the rows (ld_s %d, ld_t %d)", vocab, ld_s, ld_t);
    if (mix->w_tvd > 0 || mix->w_skl > 0 || mix->w_srkl > 0)
        return err_set(ERR_INPUT, "distillation on CUDA: TVD, skew KL and skew reverse KL are not written for CUDA "
                       "yet (FKL, RKL and JSD are); use device: cpu for these losses");
    const distill_eff e = distill_effective(mix);
    CU_DISPATCH(dt, T,
                CU_LAUNCH(n, LOSS_THREADS, 0, c->stream, distill_kernel<T>)(terms, (T *)dlogits, (const T *)zs, ld_s,
                                                                           (const T *)zt, ld_t, row_w, *mix, e, vocab));
    CU_LAUNCHED("distillation losses");
    return 0;
}
