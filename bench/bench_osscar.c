/* bench_osscar.c: OSSCAR on one large down_proj (ALGORITHMS.md §3): in 8192, out 2048, removing 3072
 * neurons with update_every 64 by default, beside bench/osscar_numpy.py (the same greedy elimination
 * and exact re-solve written in NumPy float64) run by bench/osscar_bench.sh on the same H and W.
 * Prints seconds, GFLOP/s of the float64 kernels and the result; writes H, W and smelt's kept mask
 * and weights as .npy files into DIR for the NumPy side to load and compare. Asserts nothing.
 * usage: bench_osscar DIR [in out remove update_every tokens threads] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "kernels/dense64.h"
#include "kernels/gram.h"
#include "kernels/matmul.h"
#include "kernels/threads.h"
#include "stages/prune/osscar.h"

static void die(const char *what) {
    fprintf(stderr, "bench_osscar: %s: %s\n", what, err_msg());
    exit(1);
}

/* Writes a C-order .npy file (format 1.0) of the given dtype ("<f8", "<f4", "|u1") and shape. */
static void npy_write(const char *dir, const char *name, const char *dtype, const void *data, size_t elem, int ndim,
                      const long *shape) {
    char hdr[256], shp[64] = "";
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        size_t l = strlen(shp);
        snprintf(shp + l, sizeof shp - l, "%ld,%s", shape[i], i + 1 < ndim ? " " : "");
        n *= (size_t)shape[i];
    }
    int len = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", dtype, shp);
    while ((10 + len + 1) % 64) hdr[len++] = ' ';
    hdr[len++] = '\n';
    char *path = fs_join(dir, name);
    FILE *f = path ? fopen(path, "wb") : NULL;
    if (!f) die(name);
    const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    const unsigned short hl = (unsigned short)len;
    if (fwrite(magic, 1, 8, f) != 8 || fwrite(&hl, 2, 1, f) != 1 || fwrite(hdr, 1, (size_t)len, f) != (size_t)len ||
        fwrite(data, elem, n, f) != n || fclose(f))
        die(name);
    free(path);
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: bench_osscar DIR [in out remove update_every tokens threads]\n"), 2;
    const char *dir = argv[1];
    const int in = argc > 2 ? atoi(argv[2]) : 8192, out = argc > 3 ? atoi(argv[3]) : 2048;
    const int remove = argc > 4 ? atoi(argv[4]) : 3072, upd = argc > 5 ? atoi(argv[5]) : 64;
    const int tokens = argc > 6 ? atoi(argv[6]) : in, latent = in / 16 > 0 ? in / 16 : 1;
    kernels_set_threads(argc > 7 ? atoi(argv[7]) : 0);
    if (fs_mkdir_p(dir, 0755)) die("mkdir");
    /* correlated inputs: X = Z A + 0.1 E (in/16 latent factors); H = XᵀX */
    float *z = malloc(sizeof(float) * (size_t)tokens * latent), *a = malloc(sizeof(float) * (size_t)latent * in);
    float *x = malloc(sizeof(float) * (size_t)tokens * in), *w = malloc(sizeof(float) * (size_t)out * in);
    double *h = calloc((size_t)in * in, sizeof(double));
    if (!z || !a || !x || !w || !h) return fprintf(stderr, "out of memory\n"), 1;
    uint64_t s = 88172645463325252ull;
#define RND() (s ^= s << 13, s ^= s >> 7, s ^= s << 17, ((double)(s >> 11) * 0x1p-53 - 0.5) * 3.4641016)
    for (size_t i = 0; i < (size_t)tokens * latent; i++) z[i] = (float)RND();
    for (size_t i = 0; i < (size_t)latent * in; i++) a[i] = (float)(RND() / 4.0);
    for (size_t i = 0; i < (size_t)out * in; i++) w[i] = (float)(RND() / 90.0);
    double t0 = time_monotonic();
    matmul(x, in, z, latent, 0, a, in, 0, tokens, in, latent, 1.0f, 0.0f);
    for (size_t i = 0; i < (size_t)tokens * in; i++) x[i] += (float)(0.1 * RND());
    if (gram_accumulate(h, x, in, tokens, in)) die("gram");
    gram_symmetrize(h, in);
    printf("problem: down_proj in %d, out %d, remove %d neurons, update_every %d; H from %d correlated tokens (%.1f s "
           "to build)\n", in, out, remove, upd, tokens, time_monotonic() - t0);
    free(z), free(a), free(x);
    const long sh[2] = {in, in}, sw[2] = {out, in}, sk[1] = {in};
    npy_write(dir, "H.npy", "<f8", h, sizeof(double), 2, sh);
    npy_write(dir, "W.npy", "<f4", w, sizeof(float), 2, sw);

    unsigned char *keep = malloc((size_t)in);
    osscar_opts o = {.method = PRUNE_OSSCAR, .damp = 0.01, .update_every = upd, .ls_iterations = 0, .refit = 1,
                     .want_error = 0};
    osscar_stats st;
    d_flops_reset();
    t0 = time_monotonic();
    if (osscar_prune(w, keep, &st, h, out, in, 1, remove, &o)) die("osscar_prune");
    const double sec = time_monotonic() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("smelt:  %.2f s, %.1f GFLOP of float64 kernels (%.1f GFLOP/s), %d threads; objective %.10g; peak RSS %.0f "
           "MiB (H, W and the problem included)\n", sec, d_flops() / 1e9, d_flops() / 1e9 / sec, kernels_threads(),
           st.objective, ru.ru_maxrss / 1024.0);
    printf("smelt's phases: Cholesky of H_λ %.2f s, G = H_λ⁻¹ %.2f s, greedy %.2f s, re-fit %.2f s\n", st.sec_factor,
           st.sec_inverse, st.sec_greedy, st.sec_refit);
    printf("seconds %.4f\nobjective %.12g\n", sec, st.objective);
    npy_write(dir, "keep_smelt.npy", "|u1", keep, 1, 1, sk);
    npy_write(dir, "W_smelt.npy", "<f4", w, sizeof(float), 2, sw);
    free(h), free(w), free(keep);
    return 0;
}
