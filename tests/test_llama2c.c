/* test_llama2c.c: llama2.c import on small checkpoints built here. Checks the tensor order of
 * run.c, the classifier (shared or not), and that the q/k row permutation is the right one by the
 * identity it exists for: HF's rotate_half RoPE on the permuted rows equals llama2.c's interleaved
 * RoPE on the original rows, permuted. Damaged files (truncated, trailing bytes, bad header,
 * version 1 magic) give clear errors. stories260K itself is checked in test_stories260k. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/checkpoint.h"
#include "tests/ckpt_testutil.h"

/* head size 8: with 4 the permutation is its own inverse and a swapped one would pass */
enum { DIM = 32, HID = 24, NL = 2, NH = 4, NKV = 2, VOCAB = 10, SEQ = 6, HS = DIM / NH, KVD = HS * NKV };

typedef struct {
    int32_t header[7];
    float *data; /* all floats after the header */
    size_t n;
    /* offsets (in floats) of each part, in file order */
    size_t emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq, wcls;
} l2c_file;

static void build(l2c_file *f, int shared) {
    int32_t h[7] = {DIM, HID, NL, NH, NKV, shared ? VOCAB : -VOCAB, SEQ};
    memcpy(f->header, h, sizeof h);
    size_t o = 0;
    f->emb = o, o += VOCAB * DIM;
    f->rms_att = o, o += NL * DIM;
    f->wq = o, o += NL * DIM * DIM;
    f->wk = o, o += NL * KVD * DIM;
    f->wv = o, o += NL * KVD * DIM;
    f->wo = o, o += NL * DIM * DIM;
    f->rms_ffn = o, o += NL * DIM;
    f->w1 = o, o += NL * HID * DIM;
    f->w2 = o, o += NL * DIM * HID;
    f->w3 = o, o += NL * HID * DIM;
    f->rms_final = o, o += DIM;
    f->freq = o, o += SEQ * HS; /* real and imag: SEQ * HS/2 each */
    f->wcls = o;
    if (!shared) o += VOCAB * DIM;
    f->n = o;
    f->data = malloc(o * sizeof(float));
    t_fill_random(f->data, o, shared ? 5 : 6);
}

static const char *save(const l2c_file *f, const char *name, long cut) {
    size_t bytes = 28 + f->n * 4;
    char *buf = malloc(bytes + 8);
    memcpy(buf, f->header, 28);
    memcpy(buf + 28, f->data, f->n * 4);
    memset(buf + bytes, 0, 8);
    const char *p = t_path(name);
    t_write(p, buf, (size_t)((long)bytes + cut));
    free(buf);
    return p;
}

/* llama2.c run.c: rotate pairs (i, i+1) of each head by pos * 10000^(-(i % hs)/hs). */
static void rope_interleaved(double *v, int n, int pos) {
    for (int i = 0; i < n; i += 2) {
        double fr = 1.0 / pow(10000.0, (double)(i % HS) / HS), c = cos(pos * fr), s = sin(pos * fr);
        double a = v[i], b = v[i + 1];
        v[i] = a * c - b * s;
        v[i + 1] = a * s + b * c;
    }
}

/* HF Llama: per head, rotate (k, k + hs/2) by pos * 10000^(-2k/hs) (rotate_half). */
static void rope_halves(double *v, int n, int pos) {
    for (int h = 0; h < n / HS; h++)
        for (int k = 0; k < HS / 2; k++) {
            double fr = 1.0 / pow(10000.0, 2.0 * k / HS), c = cos(pos * fr), s = sin(pos * fr);
            double *x = v + h * HS;
            double a = x[k], b = x[k + HS / 2];
            x[k] = a * c - b * s;
            x[k + HS / 2] = a * s + b * c;
        }
}

static void matvec(double *out, const float *w, const double *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += (double)w[(size_t)r * cols + c] * x[c];
        out[r] = s;
    }
}

/* The identity the permutation exists for, on q (n = DIM rows) or k (KVD rows) of one layer. */
static void check_rope_identity(const float *w_l2c, const float *w_hf, int rows, const char *what) {
    double x[DIM], a[DIM], b[DIM];
    float xf[DIM];
    t_fill_random(xf, DIM, 9);
    for (int i = 0; i < DIM; i++) x[i] = xf[i];
    for (int pos = 0; pos < SEQ; pos++) {
        matvec(a, w_l2c, x, rows, DIM);
        matvec(b, w_hf, x, rows, DIM);
        rope_interleaved(a, rows, pos);
        rope_halves(b, rows, pos);
        /* b (HF order) must be a in HF order: HF row h*HS + p*HS/2 + k holds llama2.c row h*HS + 2k + p */
        double err = 0;
        for (int hh = 0; hh < rows / HS; hh++)
            for (int k = 0; k < HS / 2; k++)
                for (int p = 0; p < 2; p++)
                    err = fmax(err, fabs(b[hh * HS + p * HS / 2 + k] - a[hh * HS + 2 * k + p]));
        /* double arithmetic on the same products in another order: ~1e-16 relative; 1e-12 is generous */
        CHECK(err < 1e-12, "%s: RoPE identity fails at pos %d (max err %g)", what, pos, err);
    }
}

static void test_import(int shared) {
    l2c_file f;
    build(&f, shared);
    const char *p = save(&f, shared ? "shared.bin" : "unshared.bin", 0);
    model_config c;
    model_weights w;
    CHECK(checkpoint_detect(p) == CKPT_LLAMA2C, "detected as llama2.c");
    EXPECT_OK(checkpoint_load(p, &c, &w), "llama2c load");
    if (!w.mem) {
        free(f.data);
        return;
    }
    CHECK(c.hidden == DIM && c.intermediate == HID && c.n_layers == NL && c.n_heads == NH && c.n_kv_heads == NKV &&
          c.head_dim == HS && c.vocab == VOCAB && c.max_pos == SEQ && c.tie_embeddings == shared && c.rms_eps == 1e-5f &&
          c.rope_theta == 10000 && c.bos_id == 1 && c.eos_id == 2 && !strcmp(c.model_type, "llama"), "config");
    const float *d = f.data;
    CHECK(!memcmp(w.embed, d + f.emb, VOCAB * DIM * 4), "embedding");
    CHECK(!memcmp(w.final_norm, d + f.rms_final, DIM * 4), "final norm");
    if (shared) CHECK(w.lm_head == w.embed, "shared classifier is the embedding");
    else CHECK(!memcmp(w.lm_head, d + f.wcls, VOCAB * DIM * 4), "separate classifier after the rope tables");
    for (int l = 0; l < NL; l++) {
        const layer_weights *lw = &w.layers[l];
        CHECK(!memcmp(lw->attn_norm, d + f.rms_att + l * DIM, DIM * 4), "attn norm %d", l);
        CHECK(!memcmp(lw->wv, d + f.wv + l * KVD * DIM, KVD * DIM * 4), "wv %d", l);
        CHECK(!memcmp(lw->wo, d + f.wo + l * DIM * DIM, DIM * DIM * 4), "wo %d", l);
        CHECK(!memcmp(lw->mlp_norm, d + f.rms_ffn + l * DIM, DIM * 4), "ffn norm %d", l);
        CHECK(!memcmp(lw->w_gate, d + f.w1 + l * HID * DIM, HID * DIM * 4), "w1 = gate %d", l);
        CHECK(!memcmp(lw->w_down, d + f.w2 + l * DIM * HID, DIM * HID * 4), "w2 = down %d", l);
        CHECK(!memcmp(lw->w_up, d + f.w3 + l * HID * DIM, HID * DIM * 4), "w3 = up %d", l);
        check_rope_identity(d + f.wq + l * DIM * DIM, lw->wq, DIM, "wq");
        check_rope_identity(d + f.wk + l * KVD * DIM, lw->wk, KVD, "wk");
        /* the inverse permutation gives the file's rows back */
        float *q = malloc(DIM * DIM * 4);
        memcpy(q, lw->wq, DIM * DIM * 4);
        EXPECT_OK(rope_rows_to_hf(q, NH, HS, DIM, 1), "inverse");
        CHECK(!memcmp(q, d + f.wq + l * DIM * DIM, DIM * DIM * 4), "inverse permutation restores wq %d", l);
        free(q);
    }
    /* the HF save of an import loads back identically */
    const char *out = t_path(shared ? "shared-hf" : "unshared-hf");
    model_config c2;
    model_weights w2;
    EXPECT_OK(checkpoint_save(out, &c, &w, ST_F32), "save");
    EXPECT_OK(checkpoint_load(out, &c2, &w2), "reload");
    if (w2.mem) {
        CHECK(t_config_equal(&c, &c2) && !memcmp(w.mem, w2.mem, w.n_floats * 4), "llama2.c -> HF -> smelt is exact");
        weights_free(&w2);
    }
    weights_free(&w);
    free(f.data);
}

static void test_damaged(void) {
    l2c_file f;
    build(&f, 1);
    model_config c;
    model_weights w;
    EXPECT_ERR(checkpoint_load(save(&f, "cut.bin", -4), &c, &w), ERR_CORRUPT, "cut.bin", "truncated");
    EXPECT_ERR(checkpoint_load(save(&f, "long.bin", 8), &c, &w), ERR_CORRUPT, "long.bin", "8 unexplained trailing bytes");
    EXPECT_ERR(checkpoint_load(save(&f, "tiny.bin", -(long)(f.n * 4) - 10), &c, &w), ERR_CORRUPT, "tiny.bin",
               "shorter than the 28-byte");
    f.header[3] = 3; /* 16 is not a multiple of 3 heads */
    EXPECT_ERR(llama2c_read_config(save(&f, "heads.bin", 0), &c), ERR_INPUT, "heads.bin", "field n_heads", "n_heads=3");
    f.header[3] = NH;
    f.header[4] = 3;
    EXPECT_ERR(checkpoint_load(save(&f, "kv.bin", 0), &c, &w), ERR_INPUT, "field n_kv_heads");
    f.header[4] = NKV;
    f.header[0] = 0x616b3432;
    EXPECT_ERR(checkpoint_load(save(&f, "v1.bin", 0), &c, &w), ERR_INPUT, "version 1/2", "--version 0");
    f.header[0] = -5;
    EXPECT_ERR(checkpoint_load(save(&f, "neg.bin", 0), &c, &w), ERR_INPUT, "field dim");
    f.header[0] = DIM;
    f.header[5] = INT32_MIN;
    EXPECT_ERR(checkpoint_load(save(&f, "vocab.bin", 0), &c, &w), ERR_INPUT, "field vocab_size");
    CHECK(!w.mem, "no allocation left after failures");
    free(f.data);
}

int main(void) {
    test_import(1);
    test_import(0);
    test_damaged();
    return t_finish("test_llama2c");
}
