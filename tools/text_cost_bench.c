// Per-step cost of the title features at text width K (issue 13): what a
// worker does per minibatch (copy the batch's distinct title rows out of its
// cache, project them: forward and dW), the extra dense floats pulled and
// pushed (W_text, d*K), and the servers' Adam on them. Same OpenBLAS as the
// workers, one thread. Sizes default to the quickstart's measured batch:
// 128 examples, ~1,100 distinct items, ~1,700 target + token positions, d 32,
// a 20,000-item catalogue.
//
//   cc -O2 -o /tmp/text_cost_bench tools/text_cost_bench.c -lopenblas -lm
//   /tmp/text_cost_bench [K ...]        (default: 384 128 64 32)
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv) {
    openblas_set_num_threads(1);
    const int N = 20000, U = 1100, P = 1700, d = 32, reps = 400;
    int ks[16], nk = 0;
    for (int i = 1; i < argc && nk < 16; i++) ks[nk++] = atoi(argv[i]);
    if (nk == 0) { ks[0] = 384; ks[1] = 128; ks[2] = 64; ks[3] = 32; nk = 4; }
    srand(1);
    printf("%5s %9s %9s %9s %9s %9s %9s  (microseconds per step of %d examples, minimum of 400 steps)\n",
           "K", "gather", "forward", "scatter", "dW", "dense_io", "adam", 128);
    for (int q = 0; q < nk; q++) {
        int K = ks[q];
        float *cache = malloc(sizeof(float) * (size_t)N * K), *x = malloc(sizeof(float) * U * K);
        float *w = malloc(sizeof(float) * d * K), *dw = calloc(d * K, sizeof(float));
        float *proj = malloc(sizeof(float) * U * d), *y = calloc(P * d, sizeof(float));
        float *m = calloc(d * K, sizeof(float)), *v = calloc(d * K, sizeof(float));
        float *wire = malloc(sizeof(float) * d * K);
        int *rows = malloc(sizeof(int) * U), *pos = malloc(sizeof(int) * P);
        for (size_t i = 0; i < (size_t)N * K; i++) cache[i] = (float)rand() / RAND_MAX - 0.5f;
        for (int i = 0; i < d * K; i++) w[i] = 0.01f * ((float)rand() / RAND_MAX - 0.5f);
        double tg = 1, tf = 1, ts = 1, tb = 1, tio = 1, ta = 1;   // minimum over reps: the machine is shared, the minimum is the undisturbed cost
        for (int r = 0; r < reps; r++) {
            for (int i = 0; i < U; i++) rows[i] = rand() % N;
            for (int i = 0; i < P; i++) pos[i] = rand() % U;
            double t0 = now();
            for (int i = 0; i < U; i++) memcpy(x + (size_t)i * K, cache + (size_t)rows[i] * K, sizeof(float) * K);
            double t1 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, U, d, K, 1, x, K, w, K, 0, proj, d);
            double t2 = now();
            for (int i = 0; i < P; i++) for (int j = 0; j < d; j++) y[i * d + j] += proj[pos[i] * d + j];
            for (int i = 0; i < P; i++) for (int j = 0; j < d; j++) proj[pos[i] * d + j] += y[i * d + j] * 1e-6f;
            double t3 = now();
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, K, U, 1, proj, d, x, K, 1, dw, K);
            double t4 = now();
            // the W_text part of the dense vector: decoded from the pull, zeroed, encoded into the push (two copies each way)
            memcpy(wire, w, sizeof(float) * d * K); memcpy(w, wire, sizeof(float) * d * K);
            memset(dw, 0, sizeof(float) * d * K);
            memcpy(wire, dw, sizeof(float) * d * K); memcpy(dw, wire, sizeof(float) * d * K);
            double t5 = now();
            for (int i = 0; i < d * K; i++) {   // server: Adam on W_text
                float g = dw[i] + 1e-3f;
                m[i] = 0.9f * m[i] + 0.1f * g; v[i] = 0.999f * v[i] + 0.001f * g * g;
                w[i] -= 1e-3f * m[i] / (sqrtf(v[i]) + 1e-8f);
            }
            double t6 = now();
            tg = fmin(tg, t1 - t0); tf = fmin(tf, t2 - t1); ts = fmin(ts, t3 - t2); tb = fmin(tb, t4 - t3); tio = fmin(tio, t5 - t4); ta = fmin(ta, t6 - t5);
        }
        double s = 1e6;
        printf("%5d %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f  total %.1f\n", K, tg * s, tf * s, ts * s, tb * s, tio * s, ta * s,
               (tg + tf + ts + tb + tio + ta) * s);
        free(cache); free(x); free(w); free(dw); free(proj); free(y); free(m); free(v); free(wire); free(rows); free(pos);
    }
    return 0;
}
