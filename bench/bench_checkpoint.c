/* bench_checkpoint.c: save/load throughput of checkpoint_save / checkpoint_load (fp32 and bf16)
 * on a synthetic Llama-shaped model, beside Python safetensors (save_file / load_file of the same
 * files, bench/bench_checkpoint_ref.py) when python3 is there. Prints a table; asserts nothing.
 * usage: bench_checkpoint [hidden layers intermediate vocab]   (default 512 8 1408 32000) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "model/checkpoint.h"

static void die(const char *what) {
    fprintf(stderr, "bench_checkpoint: %s: %s\n", what, err_msg());
    exit(1);
}

int main(int argc, char **argv) {
    model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model_type, sizeof c.model_type, "llama");
    c.hidden = argc > 1 ? atoi(argv[1]) : 512;
    c.n_layers = argc > 2 ? atoi(argv[2]) : 8;
    c.intermediate = argc > 3 ? atoi(argv[3]) : 1408;
    c.vocab = argc > 4 ? atoi(argv[4]) : 32000;
    c.n_heads = 8;
    c.n_kv_heads = 4;
    c.head_dim = c.hidden / c.n_heads;
    c.rms_eps = 1e-5f;
    c.rope_theta = 10000;
    c.max_pos = 2048;
    c.bos_id = 1;
    c.eos_id = 2;
    for (int l = 0; l < c.n_layers; l++) c.layers[l] = (layer_config){c.n_heads, c.n_kv_heads, c.intermediate};
    model_weights w, r;
    if (weights_alloc(&w, &c)) die("alloc");
    uint32_t s = 12345;
    for (size_t i = 0; i < w.n_floats; i++) {
        s = s * 1664525u + 1013904223u;
        w.mem[i] = (float)(int32_t)s * 0x1p-33f;
    }
    char dir[] = "/tmp/smelt-bench-ckpt-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    const double mb = (double)w.n_floats * 4 / 1e6;
    printf("model: hidden %d, %d layers, intermediate %d, vocab %d: %zu parameters (%.0f MB fp32)\n", c.hidden,
           c.n_layers, c.intermediate, c.vocab, w.n_floats, mb);
    printf("%-34s %10s %12s\n", "operation", "seconds", "MB/s (fp32)");
    const char *names[2] = {"fp32", "bf16"};
    st_dtype dts[2] = {ST_F32, ST_BF16};
    char out[2][256];
    for (int d = 0; d < 2; d++) {
        snprintf(out[d], sizeof out[d], "%s/%s", dir, names[d]);
        double t0 = time_monotonic();
        if (checkpoint_save(out[d], &c, &w, dts[d])) die("save");
        double t1 = time_monotonic();
        model_config c2;
        if (checkpoint_load(out[d], &c2, &r)) die("load");
        double t2 = time_monotonic();
        weights_free(&r);
        printf("smelt checkpoint_save %-12s %10.3f %12.0f\n", names[d], t1 - t0, mb / (t1 - t0));
        printf("smelt checkpoint_load %-12s %10.3f %12.0f\n", names[d], t2 - t1, mb / (t2 - t1));
    }
    fflush(stdout);
    const char *src = getenv("SMELT_SOURCE_DIR");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "python3 %s/bench/bench_checkpoint_ref.py %s %s %.3f", src ? src : ".", out[0], out[1], mb);
    if (system(cmd)) printf("(reference skipped: python3 with torch and safetensors is needed; set SMELT_SOURCE_DIR)\n");
    weights_free(&w);
    fs_rm_rf(dir);
    return 0;
}
