/* optim.cu: reductions (sums and sums of squares in fp64 over fixed blocks), gradient clipping
 * decided on the device, and AdamW (the CUDA twins of kernels/adamw.c). AdamW uses round-to-nearest
 * intrinsics (__fmul_rn, ...) so that nvcc contracts nothing into FMAs the CPU does not use: with
 * the same scalars (computed on the host exactly as adamw_update does), every element gets the
 * same bits as on the CPU, which follows torch.optim.AdamW's single-tensor arithmetic. */
#include "kernels/cuda/cu_common.cuh"

#include <math.h>

#define RED_THREADS 256
#define RED_MAX_BLOCKS 1024

/* part[blockIdx.x] = sum over a grid-stride slice of x (squared when SQ), fp64 */
template <typename S, bool SQ> __global__ void __launch_bounds__(RED_THREADS) sum_part_kernel(double *part, const S *x, size_t n) {
    __shared__ double red[32];
    double s = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const double v = (double)x[i];
        s += SQ ? v * v : v;
    }
    s = block_sum(s, red);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void __launch_bounds__(RED_THREADS) sum_final_kernel(double *out, const double *part, int n_parts, int accumulate) {
    __shared__ double red[32];
    double s = 0;
    for (int i = threadIdx.x; i < n_parts; i += blockDim.x) s += part[i];
    s = block_sum(s, red);
    if (threadIdx.x == 0) *out = accumulate ? *out + s : s;
}

template <typename S, bool SQ> static int sum_launch(cu_ctx *c, double *out, const S *x, size_t n, int accumulate) {
    if (!n) {
        if (!accumulate) return cu_zero(c, out, sizeof(double));
        return 0;
    }
    /* the number of blocks depends on n only: the same partial sums on every run */
    size_t nb = (n + 8191) / 8192;
    if (nb > RED_MAX_BLOCKS) nb = RED_MAX_BLOCKS;
    const size_t mark = c->scratch.used;
    double *part = (double *)cu_scratch_take(c, sizeof(double) * nb, "a reduction");
    if (!part) return -1;
    CU_LAUNCH((unsigned)nb, RED_THREADS, 0, c->stream, sum_part_kernel<S, SQ>)(part, x, n);
    CU_LAUNCH(1, RED_THREADS, 0, c->stream, sum_final_kernel)(out, part, (int)nb, accumulate);
    c->scratch.used = mark;
    CU_LAUNCHED("a reduction");
    return 0;
}

int cu_sum(cu_ctx *c, double *out, const float *x, size_t n, int accumulate) {
    return sum_launch<float, false>(c, out, x, n, accumulate);
}
int cu_sum_squares(cu_ctx *c, double *out, const float *x, size_t n, int accumulate) {
    return sum_launch<float, true>(c, out, x, n, accumulate);
}
int cu_sum_f64(cu_ctx *c, double *out, const double *x, size_t n, int accumulate) {
    return sum_launch<double, false>(c, out, x, n, accumulate);
}

__global__ void scale_kernel(float *x, size_t n, float s) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) x[i] *= s;
}

int cu_scale(cu_ctx *c, float *x, size_t n, float s) {
    if (!n) return 0;
    const unsigned grid = cu_blocks(n, 256) < 8192 ? cu_blocks(n, 256) : 8192;
    CU_LAUNCH(grid, 256, 0, c->stream, scale_kernel)(x, n, s);
    CU_LAUNCHED("scaling");
    return 0;
}

__global__ void clip_factor_kernel(double *norm, float *scale, int *bad, const double *sumsq, double max_norm) {
    const double nrm = sqrt(*sumsq);
    if (norm) *norm = nrm;
    *bad = !isfinite(nrm);
    *scale = max_norm > 0 && nrm > max_norm ? (float)(max_norm / (nrm + 1e-6)) : 1.0f;
}

int cu_clip_factor(cu_ctx *c, double *norm, float *scale, int *bad, const double *sumsq, double max_norm) {
    CU_LAUNCH(1, 1, 0, c->stream, clip_factor_kernel)(norm, scale, bad, sumsq, max_norm);
    CU_LAUNCHED("gradient clipping");
    return 0;
}

/* The scalars of one step, computed on the host exactly as adamw_update computes them. */
struct adamw_consts {
    float keep, w1, b2, w2, neg_step, bc2_sqrt, eps;
    int do_decay;
};

template <typename C>
__global__ void adamw_kernel(float *p, float *m, float *v, const float *g, const float *grad_scale, const int *skip,
                             size_t n, adamw_consts k, C *p_copy) {
    if (skip && *skip) return;
    const float gs = grad_scale ? *grad_scale : 1.0f;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float pi = p[i];
        const float gi = gs == 1.0f ? g[i] : __fmul_rn(g[i], gs);
        if (k.do_decay) pi = __fmul_rn(pi, k.keep);
        const float mi = __fmaf_rn(k.w1, __fsub_rn(gi, m[i]), m[i]); /* exp_avg.lerp_(grad, 1 - beta1) */
        const float vi = __fadd_rn(__fmul_rn(v[i], k.b2), __fmul_rn(__fmul_rn(k.w2, gi), gi));
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), k.bc2_sqrt), k.eps);
        const float pn = __fadd_rn(pi, __fdiv_rn(__fmul_rn(k.neg_step, mi), denom));
        p[i] = pn;
        m[i] = mi;
        v[i] = vi;
        if (p_copy) p_copy[i] = cu_to<C>(pn);
    }
}

int cu_adamw(cu_ctx *c, float *p, float *m, float *v, const float *g, const float *grad_scale, const int *skip,
             size_t n, const adamw_hparams *h, long step, int decay, void *p_copy, cu_dtype copy_dt) {
    if (!n) return 0;
    if (step < 1) return err_set(ERR_INTERNAL, "cu_adamw: step %ld (the first step is 1)", step);
    adamw_consts k;
    k.keep = (float)(1.0 - h->lr * h->weight_decay);
    k.w1 = (float)(1.0 - h->beta1);
    k.b2 = (float)h->beta2;
    k.w2 = (float)(1.0 - h->beta2);
    const double bc1 = 1.0 - pow(h->beta1, (double)step), bc2 = 1.0 - pow(h->beta2, (double)step);
    k.neg_step = (float)(-(h->lr / bc1));
    k.bc2_sqrt = (float)sqrt(bc2);
    k.eps = (float)h->eps;
    k.do_decay = decay && h->weight_decay != 0;
    const unsigned grid = cu_blocks(n, 256) < 8192 ? cu_blocks(n, 256) : 8192;
    CU_DISPATCH(copy_dt, C,
                CU_LAUNCH(grid, 256, 0, c->stream, adamw_kernel<C>)(p, m, v, g, grad_scale, skip, n, k, (C *)p_copy));
    CU_LAUNCHED("AdamW");
    return 0;
}
