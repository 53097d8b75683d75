/* test_gram.c: gram_accumulate (H += X^T X in float64, kernels/gram.h) against the plain loop, over
 * shapes that cover one tile, several tiles with a ragged edge, several row blocks, a column stride
 * and accumulation into a non-zero H; and bitwise the same H on 1 and 2 threads (every row block
 * split, whatever its size). Products of two floats are exact in double, so the only error is the
 * summation's: per entry at most n eps64 sum_r |x_ri x_rj| (eps64 = 2^-52), a bound far above
 * what a wrong entry would miss. */
#include <float.h>

#include "engine_testutil.h"
#include "kernels/gram.h"
#include "kernels/threads.h"

static double *gram(const float *x, int ldx, int n, int d, int threads, const double *h0) {
    double *h = malloc(sizeof(double) * (size_t)d * d);
    memcpy(h, h0, sizeof(double) * (size_t)d * d);
    kernels_set_threads(threads);
    if (gram_accumulate(h, x, ldx, n, d)) printf("gram: %s\n", err_msg()), exit(1);
    gram_symmetrize(h, d);
    return h;
}

int main(void) {
    const int shapes[][3] = {{1, 1, 1}, {7, 5, 5}, {300, 200, 203}, {600, 530, 530}, {1000, 257, 260}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int n = shapes[s][0], d = shapes[s][1], ldx = shapes[s][2];
        tu_seed(100 + s);
        float *x = tu_randn((size_t)n * ldx, 1.0);
        for (int r = 0; r < n; r += 3) x[(size_t)r * ldx] *= 40; /* an outlier column, as in real activations */
        double *h0 = malloc(sizeof(double) * (size_t)d * d), *ref = malloc(sizeof(double) * (size_t)d * d);
        for (int i = 0; i < d; i++)
            for (int j = 0; j <= i; j++) h0[(size_t)i * d + j] = h0[(size_t)j * d + i] = tu_normal();
        memcpy(ref, h0, sizeof(double) * (size_t)d * d);
        gram_accumulate_ref(ref, x, ldx, n, d);
        double *h1 = gram(x, ldx, n, d, 1, h0);
        kernels_split_always(1); /* 2 threads whatever the size, so the small shapes split too */
        double *h2 = gram(x, ldx, n, d, 2, h0);
        kernels_split_always(0);
        double worst = 0;
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++) {
                double bound = fabs(h0[(size_t)i * d + j]);
                for (int r = 0; r < n; r++) bound += fabs((double)x[(size_t)r * ldx + i] * x[(size_t)r * ldx + j]);
                bound *= (n + 2) * DBL_EPSILON;
                double e = fabs(h1[(size_t)i * d + j] - ref[(size_t)i * d + j]) / (bound > 0 ? bound : 1);
                if (e > worst) worst = e;
            }
        tu_expect(worst <= 1, "n %d d %d: |H - ref| is %.3g of the bound", n, d, worst);
        tu_expect(!memcmp(h1, h2, sizeof(double) * (size_t)d * d), "n %d d %d: 1 and 2 threads give the same H", n, d);
        free(x), free(h0), free(ref), free(h1), free(h2);
    }
    return tu_finish("test_gram");
}
