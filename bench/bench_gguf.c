/* bench_gguf.c: the time to load a GGUF model file into smelt's fp32 weights (parse, dequantize
 * every tensor, undo the Llama q/k permutation), median of RUNS loads, and the dequantization
 * rate per ggml type over the file's tensors. bench/gguf_bench.sh prints it beside transformers'
 * GGUF loading (bench/gguf_load_ref.py). Asserts nothing.
 * usage: bench_gguf FILE.gguf [RUNS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "model/checkpoint.h"
#include "model/gguf.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_gguf FILE.gguf [RUNS]\n");
        return 2;
    }
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    if (runs < 1) runs = 1;
    double *t = malloc(sizeof(double) * (size_t)runs);
    size_t params = 0;
    for (int r = 0; r < runs; r++) {
        model_config c;
        model_weights w;
        double t0 = time_monotonic();
        if (checkpoint_load(argv[1], &c, &w)) {
            fprintf(stderr, "bench_gguf: %s\n", err_msg());
            return 1;
        }
        t[r] = time_monotonic() - t0;
        params = w.n_floats;
        weights_free(&w);
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    printf("load_s %.4f\nparams %zu\n", t[runs / 2], params);
    /* dequantization alone, per type, over the tensors of the (mmapped, already cached) file */
    gguf_file f;
    if (gguf_open(&f, argv[1])) {
        fprintf(stderr, "bench_gguf: %s\n", err_msg());
        return 1;
    }
    for (int type = 0; type < GGML_N_TYPES; type++) {
        uint64_t n = 0, bytes = 0;
        double secs = 0;
        for (int64_t i = 0; i < f.n_tensors; i++) {
            const gguf_tensor *x = &f.tensors[i];
            if ((int)x->type != type || !ggml_can_dequantize(x->type)) continue;
            float *out = malloc(x->n_elems * sizeof(float));
            double t0 = time_monotonic();
            if (!out || ggml_dequantize(out, x->data, x->type, (int64_t)x->n_elems)) return 1;
            secs += time_monotonic() - t0;
            n += x->n_elems;
            bytes += x->n_bytes;
            free(out);
        }
        if (n)
            printf("dequant %s %llu weights %.1f Mweights/s %.0f MB/s\n", ggml_type_name((ggml_type)type),
                   (unsigned long long)n, (double)n / secs / 1e6, (double)bytes / secs / 1e6);
    }
    gguf_close(&f);
    free(t);
    return 0;
}
