/* gemm_bf16.c: C = alpha op(A) op(B) + beta C with bf16 operands and fp32 sums (see bf16.h).
 *
 * Both operands are first converted to bf16 and packed into panels (all threads share the
 * packing, then a barrier), then each 8 x 48 tile of C is one micro-kernel call over the WHOLE
 * reduction: 24 zmm accumulators, VDPBF16PS on pairs of k. No k blocking: a B panel of k/2 x 48
 * words streams from L2 (measured 97-100% of the VDPBF16PS peak for k up to 2048 on Zen 4), and
 * every element of C is one fixed-order sum whatever the thread count or the tile a thread takes.
 *
 * Packed layouts (kp = ceil(k / 2) pairs; entries beyond m, n or k are zero):
 *   A panel of MR rows i0..:   word [p * MR + r] = bf16 A(i0 + r, 2p) | bf16 A(i0 + r, 2p + 1) << 16
 *   B panel of NR columns j0..: word [p * NR + c] = bf16 B(2p, j0 + c) | bf16 B(2p + 1, j0 + c) << 16
 * Tiles go by blocks of B panels that fit L2 (outer), rows of A (middle), the block's panels
 * (inner), split into one contiguous range of tiles per thread. */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/bf16.h"
#include "kernels/matmul.h"
#include "kernels/threads.h"

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))
#define MR 8
#define NR 48
#define B_BLOCK_BYTES (512 * 1024) /* B panels per block: half of Zen 4's 1 MB L2 */

/* An operand: element (idx, p) of the index (row of A, column of B) and the reduction index p. */
typedef struct {
    const float *f;
    size_t ld;
    int kmajor;     /* 1: at [idx * ld + p]; 0: at [p * ld + idx] */
    int n_idx;
} gsrc;

static inline float src_at(const gsrc *s, int idx, int p) {
    return s->kmajor ? s->f[(size_t)idx * s->ld + p] : s->f[(size_t)p * s->ld + idx];
}

/* ---- packing ---- */

/* Portable packing (any CPU): the same words through the scalar conversion. */
static void pack_panel_scalar(uint32_t *dst, const gsrc *s, int idx0, int w, int k) {
    const int kp = (k + 1) / 2;
    for (int p = 0; p < kp; p++)
        for (int r = 0; r < w; r++) {
            const int idx = idx0 + r;
            uint32_t lo = 0, hi = 0;
            if (idx < s->n_idx) {
                lo = bf16_from_f32(src_at(s, idx, 2 * p));
                if (2 * p + 1 < k) hi = bf16_from_f32(src_at(s, idx, 2 * p + 1));
            }
            dst[(size_t)p * w + r] = lo | hi << 16;
        }
}

static inline __mmask16 lanes(int n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* k-major source: each index's row is contiguous in p. Eight rows at a time: 32 values of each row
 * -> 16 words (one zmm per row), then the 8 x 16 block of words is transposed in registers
 * (unpack 32, unpack 64) so that each 128-bit lane holds 4 rows of one pair, stored as 16 bytes:
 * pair p of rows r0..r0+3 and r0+4..r0+7 land at [p * w + r0 ..]. The same words as one store per
 * word (the portable packing), in 32 stores of 4 words instead of 128 of one. */
BF16_TARGET static void pack_kmajor(uint32_t *dst, const gsrc *s, int idx0, int w, int k) {
    const int kp = (k + 1) / 2;
    for (int r0 = 0; r0 < w; r0 += 8) { /* w is 8 or 48 */
        const float *row[8];
        int live[8];
        for (int i = 0; i < 8; i++) {
            live[i] = idx0 + r0 + i < s->n_idx;
            row[i] = s->f + (size_t)(live[i] ? idx0 + r0 + i : 0) * s->ld;
        }
        for (int p0 = 0; p0 < kp; p0 += 16) {
            const int e0 = 2 * p0, ne = k - e0; /* values left in the row */
            const __mmask16 m0 = lanes(ne), m1 = lanes(ne - 16);
            __m512i x[8], t[8], u[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                const __m512 lo = _mm512_maskz_loadu_ps(live[i] ? m0 : 0, row[i] + e0);
                const __m512 hi = _mm512_maskz_loadu_ps(live[i] ? m1 : 0, row[i] + e0 + 16);
                x[i] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo); /* word q = pair p0 + q of row i */
            }
            /* lane L of t[2i] = (x[2i][4L], x[2i+1][4L], x[2i][4L+1], x[2i+1][4L+1]); t[2i+1] the same for 4L+2, 4L+3 */
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                t[2 * i] = _mm512_unpacklo_epi32(x[2 * i], x[2 * i + 1]);
                t[2 * i + 1] = _mm512_unpackhi_epi32(x[2 * i], x[2 * i + 1]);
            }
            /* lane L of u[j] = rows 0..3 of pair 4L + j, of u[4 + j] = rows 4..7 */
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                u[4 * h + 0] = _mm512_unpacklo_epi64(t[4 * h + 0], t[4 * h + 2]);
                u[4 * h + 1] = _mm512_unpackhi_epi64(t[4 * h + 0], t[4 * h + 2]);
                u[4 * h + 2] = _mm512_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
                u[4 * h + 3] = _mm512_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
            }
            const int np = kp - p0 < 16 ? kp - p0 : 16;
            uint32_t *d = dst + (size_t)p0 * w + r0;
            if (np == 16) {
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    _mm_storeu_si128((__m128i *)(d + (size_t)j * w), _mm512_castsi512_si128(u[j]));
                    _mm_storeu_si128((__m128i *)(d + (size_t)j * w + 4), _mm512_castsi512_si128(u[4 + j]));
                    _mm_storeu_si128((__m128i *)(d + (size_t)(4 + j) * w), _mm512_extracti32x4_epi32(u[j], 1));
                    _mm_storeu_si128((__m128i *)(d + (size_t)(4 + j) * w + 4), _mm512_extracti32x4_epi32(u[4 + j], 1));
                    _mm_storeu_si128((__m128i *)(d + (size_t)(8 + j) * w), _mm512_extracti32x4_epi32(u[j], 2));
                    _mm_storeu_si128((__m128i *)(d + (size_t)(8 + j) * w + 4), _mm512_extracti32x4_epi32(u[4 + j], 2));
                    _mm_storeu_si128((__m128i *)(d + (size_t)(12 + j) * w), _mm512_extracti32x4_epi32(u[j], 3));
                    _mm_storeu_si128((__m128i *)(d + (size_t)(12 + j) * w + 4), _mm512_extracti32x4_epi32(u[4 + j], 3));
                }
            } else { /* the last pairs of the row: through memory */
                uint32_t tmp[8][16];
                for (int j = 0; j < 8; j++) _mm512_storeu_si512(tmp[j], u[j]);
                for (int q = 0; q < np; q++) { /* pair q: lane q / 4 of u[q % 4] and u[4 + q % 4] */
                    memcpy(d + (size_t)q * w, &tmp[q % 4][4 * (q / 4)], 16);
                    memcpy(d + (size_t)q * w + 4, &tmp[4 + q % 4][4 * (q / 4)], 16);
                }
            }
        }
    }
}

/* Index-major fp32 source: rows p are contiguous in idx. Pairs p0 .. p1-1 of EVERY panel (n_pan
 * panels of width w, 8 or 48, at dst), reading the source rows in order: two rows are converted
 * and interleaved 16 indices at a time (one 16-word chunk covers two panels of 8, or a third of a
 * panel of 48). Streaming rows keeps the reads sequential; panel by panel they would jump a row
 * (a page, for wide sources) every 32 to 192 bytes. */
BF16_TARGET static void pack_imajor_pairs(uint32_t *dst, const gsrc *s, int n_pan, int w, int k, int p0, int p1) {
    const int kp = (k + 1) / 2, width = n_pan * w;
    const size_t pan = (size_t)w * kp;
    for (int p = p0; p < p1; p++) {
        const float *r0 = s->f + (size_t)(2 * p) * s->ld, *r1 = r0 + s->ld;
        const int two = 2 * p + 1 < k;
        for (int c0 = 0; c0 < width; c0 += 16) {
            const __mmask16 m = lanes(s->n_idx - c0);
            const __m512 x0 = _mm512_maskz_loadu_ps(m, r0 + c0);
            const __m512 x1 = two ? _mm512_maskz_loadu_ps(m, r1 + c0) : _mm512_setzero_ps();
            const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(x0));
            const __m512i hi = _mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(x1)), 16);
            const __m512i wd = _mm512_or_si512(lo, hi);
            if (w == 8) {
                _mm256_storeu_si256((__m256i *)(dst + (size_t)(c0 / 8) * pan + (size_t)p * 8), _mm512_castsi512_si256(wd));
                if (c0 + 8 < width)
                    _mm256_storeu_si256((__m256i *)(dst + (size_t)(c0 / 8 + 1) * pan + (size_t)p * 8),
                                        _mm512_extracti64x4_epi64(wd, 1));
            } else {
                _mm512_storeu_si512(dst + (size_t)(c0 / w) * pan + (size_t)p * w + c0 % w, wd);
            }
        }
    }
}

/* Packs share t of nt of one operand: panels split among threads (k-major and portable), or
 * pairs (index-major fp32). */
static void pack_share(uint32_t *dst, const gsrc *s, int n_pan, int w, int k, int fast, int t, int nt) {
    const int kp = (k + 1) / 2;
    if (fast && !s->kmajor) {
        pack_imajor_pairs(dst, s, n_pan, w, k, (int)((long)kp * t / nt), (int)((long)kp * (t + 1) / nt));
        return;
    }
    for (int pi = t; pi < n_pan; pi += nt) {
        uint32_t *d = dst + (size_t)pi * w * kp;
        if (fast) pack_kmajor(d, s, pi * w, w, k);
        else pack_panel_scalar(d, s, pi * w, w, k);
    }
}

/* ---- the micro-kernel ---- */

/* C[mr, nc] (mr <= MR, nc <= 16 NV <= NR) = alpha * (A panel x B panel) + beta * C, over the first
 * NV vectors of the B panel: the last panel of an n that is not a multiple of NR computes only the
 * vectors it stores (the same sums, a third or two of the work less). */
BF16_TARGET static inline __attribute__((always_inline)) void ukernel_nv(float *c, int ldc, const uint32_t *ap,
                                                                        const uint32_t *bp, int kp, int mr, int nc,
                                                                        float alpha, float beta, const int NV) {
    __m512 acc[MR][3];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = acc[i][2] = _mm512_setzero_ps();
    for (int p = 0; p < kp; p++) {
        __m512bh b[3];
#pragma GCC unroll 3
        for (int j = 0; j < NV; j++) b[j] = (__m512bh)_mm512_loadu_si512(bp + (size_t)p * NR + 16 * j);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            const __m512bh a = (__m512bh)_mm512_set1_epi32((int)ap[(size_t)p * MR + i]);
#pragma GCC unroll 3
            for (int j = 0; j < NV; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], a, b[j]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        if (i >= mr) break;
#pragma GCC unroll 3
        for (int j = 0; j < NV; j++) {
            const __mmask16 m = lanes(nc - 16 * j);
            if (!m) break;
            float *cp = c + (size_t)i * ldc + 16 * j;
            __m512 r = alpha == 1.0f ? acc[i][j] : _mm512_mul_ps(va, acc[i][j]);
            if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, cp), r);
            _mm512_mask_storeu_ps(cp, m, r);
        }
    }
}

BF16_TARGET static void ukernel(float *c, int ldc, const uint32_t *ap, const uint32_t *bp, int kp, int mr, int nc,
                                float alpha, float beta) {
    if (nc > 32) ukernel_nv(c, ldc, ap, bp, kp, mr, nc, alpha, beta, 3);
    else if (nc > 16) ukernel_nv(c, ldc, ap, bp, kp, mr, nc, alpha, beta, 2);
    else ukernel_nv(c, ldc, ap, bp, kp, mr, nc, alpha, beta, 1);
}

/* The portable tile: the same products (exact in fp32) summed in double, rounded once. It does
 * not equal the fast tile bitwise; it is what a CPU without AVX512_BF16 gets. */
static void utile_scalar(float *c, int ldc, const uint32_t *ap, const uint32_t *bp, int kp, int mr, int nc, float alpha,
                         float beta) {
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nc; j++) {
            double s = 0;
            for (int p = 0; p < kp; p++) {
                const uint32_t a = ap[(size_t)p * MR + i], b = bp[(size_t)p * NR + j];
                s += (double)bf16_to_f32((bf16)(a & 0xffff)) * bf16_to_f32((bf16)(b & 0xffff));
                s += (double)bf16_to_f32((bf16)(a >> 16)) * bf16_to_f32((bf16)(b >> 16));
            }
            float *cp = c + (size_t)i * ldc + j;
            *cp = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *cp));
        }
}

/* ---- driver ---- */

/* Packing space kept from call to call (grown, never shrunk): a fresh malloc of a few MB per
 * product came back from the kernel as new pages every time, and faulting and zeroing them took
 * ~5% of a bf16 training step of the 32M model (perf: page faults under gemm_run). One caller at a
 * time holds it; a concurrent call (another model on another thread) allocates its own. */
static uint32_t *pack_mem;
static size_t pack_cap;
static atomic_flag pack_busy = ATOMIC_FLAG_INIT;

/* Space for n words: the kept space when free (*kept = 1), else a malloc; NULL when out of memory. */
static uint32_t *pack_take(size_t n, int *kept) {
    *kept = !atomic_flag_test_and_set(&pack_busy);
    if (!*kept) return malloc(sizeof(uint32_t) * n);
    if (n > pack_cap) {
        free(pack_mem);
        pack_mem = malloc(sizeof(uint32_t) * n);
        pack_cap = pack_mem ? n : 0;
        if (!pack_mem) {
            atomic_flag_clear(&pack_busy);
            *kept = 0;
            return NULL;
        }
    }
    return pack_mem;
}

static void pack_give(uint32_t *p, int kept) {
    if (kept) atomic_flag_clear(&pack_busy);
    else free(p);
}

/* C = alpha A B + beta C; B is packed here, or already (pre: its panels). */
static int gemm_run(float *c, int ldc, const gsrc *A, const gsrc *B, const uint32_t *pre, int m, int n, int k,
                    float alpha, float beta) {
    if (m <= 0 || n <= 0) return 0;
    const int kp = (k + 1) / 2, npa = (m + MR - 1) / MR, npb = (n + NR - 1) / NR, fast = bf16_available();
    if (kp == 0) { /* an empty sum: C = beta C */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * c[(size_t)i * ldc + j];
        return 0;
    }
    const size_t na = (size_t)npa * MR * kp, nb = pre ? 0 : (size_t)npb * NR * kp;
    int kept;
    uint32_t *ap = pack_take(na + nb, &kept);
    uint32_t *own = pre || !ap ? NULL : ap + na;
    const uint32_t *bp = pre ? pre : own;
    if (!ap) {
        return err_set(ERR_NOMEM, "cannot allocate %.1f MiB for the packed operands of a bf16 product",
                       ((double)npa * MR + (pre ? 0.0 : (double)npb * NR)) * kp * 4 / 1048576.0);
    }
    int blk = (int)(B_BLOCK_BYTES / ((size_t)NR * kp * 4));
    blk = blk < 1 ? 1 : blk > npb ? npb : blk;
    const long n_tiles = (long)npa * npb;
    matmul_flops_add(2.0 * m * n * k);
    const int T = kernels_threads_for((double)m * n * k, THR_GEMM_BF16_MACS);
#pragma omp parallel num_threads(T) if (T > 1)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        pack_share(ap, A, npa, MR, k, fast, t, nt);
        if (own) pack_share(own, B, npb, NR, k, fast, t, nt);
#pragma omp barrier
        const long lo = n_tiles * t / nt, hi = n_tiles * (t + 1) / nt;
        for (long x = lo; x < hi; x++) {
            /* x -> (block of B panels jb, row panel i, panel j in the block) */
            const long per_block = (long)npa * blk;
            const int jb = (int)(x / per_block), bw = npb - jb * blk < blk ? npb - jb * blk : blk;
            const long r = x - (long)jb * per_block;
            const int i = (int)(r / bw), j = jb * blk + (int)(r % bw);
            const int mr = m - i * MR < MR ? m - i * MR : MR, nc = n - j * NR < NR ? n - j * NR : NR;
            float *ct = c + (size_t)i * MR * ldc + (size_t)j * NR;
            const uint32_t *at = ap + (size_t)i * MR * kp, *bt = bp + (size_t)j * NR * kp;
            if (fast) ukernel(ct, ldc, at, bt, kp, mr, nc, alpha, beta);
            else utile_scalar(ct, ldc, at, bt, kp, mr, nc, alpha, beta);
        }
    }
    pack_give(ap, kept);
    return 0;
}

int gemm_bf16(float *c, int ldc, const float *a, int lda, int trans_a, const float *b, int ldb, int trans_b, int m,
              int n, int k, float alpha, float beta) {
    const gsrc A = {.f = a, .ld = (size_t)lda, .kmajor = !trans_a, .n_idx = m};
    const gsrc B = {.f = b, .ld = (size_t)ldb, .kmajor = trans_b, .n_idx = n};
    return gemm_run(c, ldc, &A, &B, NULL, m, n, k, alpha, beta);
}

static int pack_b(gemm_bf16_b *pb, const gsrc *B, int n, int k) {
    const int kp = (k + 1) / 2, npb = (n + NR - 1) / NR, fast = bf16_available();
    if (!pb->panels || pb->n != n || pb->k != k) { /* a new operand, or another shape: (re)allocate */
        free(pb->panels);
        memset(pb, 0, sizeof *pb);
        pb->panels = malloc(sizeof(uint32_t) * ((size_t)npb * NR * kp + 1));
        if (!pb->panels)
            return err_set(ERR_NOMEM, "cannot allocate %.1f MiB for a packed bf16 operand",
                           (double)npb * NR * kp * 4 / 1048576.0);
        pb->n = n, pb->k = k;
    }
    const int T = kernels_threads_for((double)n * k, THR_STREAM_FLOATS);
#pragma omp parallel num_threads(T) if (T > 1)
    pack_share(pb->panels, B, npb, NR, k, fast, omp_get_thread_num(), omp_get_num_threads());
    return 0;
}

int gemm_bf16_pack_b(gemm_bf16_b *pb, const float *b, int ldb, int trans_b, int n, int k) {
    const gsrc B = {.f = b, .ld = (size_t)ldb, .kmajor = trans_b, .n_idx = n};
    return pack_b(pb, &B, n, k);
}

void gemm_bf16_b_free(gemm_bf16_b *pb) {
    free(pb->panels);
    memset(pb, 0, sizeof *pb);
}

int gemm_bf16_packed(float *c, int ldc, const float *a, int lda, int trans_a, const gemm_bf16_b *pb, int m, float alpha,
                     float beta) {
    const gsrc A = {.f = a, .ld = (size_t)lda, .kmajor = !trans_a, .n_idx = m};
    return gemm_run(c, ldc, &A, NULL, pb->panels, m, pb->n, pb->k, alpha, beta);
}

/* ---- a few rows against a packed operand: the decode path of bf16 weights ---- */

/* R rows (a constant at each call) against one panel of NR outputs (nc of them stored): the two
 * bf16 of each word widened exactly to fp32 (a shift, a mask), fp32 FMAs in order of p. */
#define GV_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
GV_TARGET static inline __attribute__((always_inline)) void gv_panel(float *y, int ldy, const float *x, int ldx,
                                                                        const uint32_t *pan, int kp, int k, int nc,
                                                                        int accumulate, const int R) {
    __m512 acc[4][3];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = acc[r][2] = _mm512_setzero_ps();
    const __m512i hi_mask = _mm512_set1_epi32((int)0xffff0000u);
    for (int p = 0; p < kp; p++) {
        __m512 e[3], o[3];
#pragma GCC unroll 3
        for (int q = 0; q < 3; q++) {
            const __m512i wv = _mm512_loadu_si512(pan + (size_t)p * NR + 16 * q);
            e[q] = _mm512_castsi512_ps(_mm512_slli_epi32(wv, 16));
            o[q] = _mm512_castsi512_ps(_mm512_and_si512(wv, hi_mask));
        }
        const int two = 2 * p + 1 < k;
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m512 xe = _mm512_set1_ps(x[(size_t)r * ldx + 2 * p]);
            const __m512 xo = _mm512_set1_ps(two ? x[(size_t)r * ldx + 2 * p + 1] : 0.0f);
#pragma GCC unroll 3
            for (int q = 0; q < 3; q++) acc[r][q] = _mm512_fmadd_ps(xo, o[q], _mm512_fmadd_ps(xe, e[q], acc[r][q]));
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int q = 0; q < 3; q++) {
            const __mmask16 m = lanes(nc - 16 * q);
            float *yp = y + (size_t)r * ldy + 16 * q;
            const __m512 v = accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, yp), acc[r][q]) : acc[r][q];
            _mm512_mask_storeu_ps(yp, m, v);
        }
}

GV_TARGET static void gv_rows(float *y, int ldy, const float *x, int ldx, const uint32_t *pan, int kp, int k, int nc,
                              int accumulate, int R) {
    switch (R) {
    case 1: gv_panel(y, ldy, x, ldx, pan, kp, k, nc, accumulate, 1); break;
    case 2: gv_panel(y, ldy, x, ldx, pan, kp, k, nc, accumulate, 2); break;
    case 3: gv_panel(y, ldy, x, ldx, pan, kp, k, nc, accumulate, 3); break;
    default: gv_panel(y, ldy, x, ldx, pan, kp, k, nc, accumulate, 4); break;
    }
}

/* The same sums in plain C (CPUs without AVX-512). */
static void gv_plain(float *y, int ldy, const float *x, int ldx, const uint32_t *pan, int kp, int k, int nc,
                     int accumulate, int R) {
    for (int r = 0; r < R; r++)
        for (int c = 0; c < nc; c++) {
            float s = 0;
            for (int p = 0; p < kp; p++) {
                const uint32_t w = pan[(size_t)p * NR + c];
                s = fmaf(x[(size_t)r * ldx + 2 * p], bf16_to_f32((bf16)(w & 0xffff)), s);
                if (2 * p + 1 < k) s = fmaf(x[(size_t)r * ldx + 2 * p + 1], bf16_to_f32((bf16)(w >> 16)), s);
            }
            float *yp = y + (size_t)r * ldy + c;
            *yp = accumulate ? *yp + s : s;
        }
}

void gemv_bf16_packed(float *y, int ldy, const float *x, int ldx, const gemm_bf16_b *pb, int n_rows, int j0, int j1,
                      int accumulate) {
    static int avx = -1;
    if (avx < 0) {
        __builtin_cpu_init();
        avx = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    }
    const int kp = (pb->k + 1) / 2;
    float tmp[4 * NR];
    for (int p0 = j0 / NR * NR; p0 < j1; p0 += NR) {
        const uint32_t *pan = pb->panels + (size_t)(p0 / NR) * NR * kp;
        /* columns a .. b-1 of this panel are asked for; a panel cut by j0 or j1 goes through tmp */
        const int a = j0 > p0 ? j0 - p0 : 0, b = j1 - p0 < NR ? j1 - p0 : NR, whole = a == 0;
        const int width = pb->n - p0 < NR ? pb->n - p0 : NR; /* valid columns of the panel */
        for (int r0 = 0; r0 < n_rows; r0 += 4) {
            const int R = n_rows - r0 < 4 ? n_rows - r0 : 4;
            const float *xr = x + (size_t)r0 * ldx;
            float *yr = whole ? y + (size_t)r0 * ldy + p0 : tmp;
            const int ld = whole ? ldy : NR, nc = whole ? b : width, acc = whole ? accumulate : 0;
            if (avx) gv_rows(yr, ld, xr, ldx, pan, kp, pb->k, nc, acc, R);
            else gv_plain(yr, ld, xr, ldx, pan, kp, pb->k, nc, acc, R);
            if (!whole)
                for (int r = 0; r < R; r++)
                    for (int c = a; c < b; c++) {
                        float *yp = y + (size_t)(r0 + r) * ldy + p0 + c;
                        *yp = accumulate ? *yp + tmp[r * NR + c] : tmp[r * NR + c];
                    }
        }
    }
}

void gemm_bf16_ref(float *c, int ldc, const float *a, int lda, int trans_a, const float *b, int ldb, int trans_b, int m,
                   int n, int k, float alpha, float beta) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++) {
                const float av = trans_a ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                const float bv = trans_b ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                s += (double)bf16_round(av) * bf16_round(bv);
            }
            float *cij = c + (size_t)i * ldc + j;
            *cij = (float)(alpha * s + (beta == 0 ? 0.0 : (double)beta * *cij));
        }
}
