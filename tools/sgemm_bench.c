/*
 * sgemm-bench: measures OpenBLAS SGEMM GFLOP/s on this machine (the reference the inference
 * benchmark is compared with). Usage: sgemm-bench [threads] [M N K] [runs].
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void openblas_set_num_threads(int num_threads);

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    int M = argc > 4 ? atoi(argv[2]) : 1024, N = argc > 4 ? atoi(argv[3]) : 1024;
    int K = argc > 4 ? atoi(argv[4]) : 1024, runs = argc > 5 ? atoi(argv[5]) : 10;
    if (threads < 1 || M < 1 || N < 1 || K < 1 || runs < 1)
        return 2;
    openblas_set_num_threads(threads);
    float *a = malloc(sizeof(float) * (size_t)M * K), *b = malloc(sizeof(float) * (size_t)K * N);
    float *c = malloc(sizeof(float) * (size_t)M * N);
    if (!a || !b || !c)
        return 1;
    for (size_t i = 0; i < (size_t)M * K; i++)
        a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)K * N; i++)
        b[i] = (float)(i % 5) * 0.1f;
    double best = 0, sum = 0;
    for (int r = 0; r <= runs; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c,
                    N);
        double g = 2.0 * M * N * K / (now_s() - t0) / 1e9;
        if (r == 0)
            continue; /* warm-up */
        sum += g;
        if (g > best)
            best = g;
    }
    printf("sgemm threads %d %dx%dx%d: mean %.1f GFLOP/s, best %.1f GFLOP/s\n", threads, M, N, K,
           sum / runs, best);
    free(a);
    free(b);
    free(c);
    return 0;
}
