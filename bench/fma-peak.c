// Measures this CPU's float32 peak: every core runs independent chains of fused multiply-adds on the widest
// vectors it has (AVX-512, else AVX2+FMA). Peak = cores × FMAs per second × lanes × 2. Prints GFLOP/s.
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define CHAINS 12
static long iters = 20000000;
static int use512;
static volatile float sink;

__attribute__((target("avx512f"))) static void chains512(void) {
  __m512 acc[CHAINS];
  const __m512 b = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
  for (int k = 0; k < CHAINS; k++) acc[k] = _mm512_set1_ps((float)k);
  for (long i = 0; i < iters; i++)
    for (int k = 0; k < CHAINS; k++) acc[k] = _mm512_fmadd_ps(acc[k], b, c);
  float s = 0;
  for (int k = 0; k < CHAINS; k++) s += _mm512_reduce_add_ps(acc[k]);
  sink = s;
}

__attribute__((target("avx2,fma"))) static void chains256(void) {
  __m256 acc[CHAINS];
  const __m256 b = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
  for (int k = 0; k < CHAINS; k++) acc[k] = _mm256_set1_ps((float)k);
  for (long i = 0; i < iters; i++)
    for (int k = 0; k < CHAINS; k++) acc[k] = _mm256_fmadd_ps(acc[k], b, c);
  float s = 0, t[8];
  for (int k = 0; k < CHAINS; k++) { _mm256_storeu_ps(t, acc[k]); for (int j = 0; j < 8; j++) s += t[j]; }
  sink = s;
}

static void *work(void *arg) {
  (void)arg;
  if (use512) chains512(); else chains256();
  return NULL;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
  __builtin_cpu_init();
  use512 = __builtin_cpu_supports("avx512f");
  if (!use512 && !__builtin_cpu_supports("fma")) { printf("{\"error\":\"no FMA\"}\n"); return 1; }
  int lanes = use512 ? 16 : 8;
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    pthread_t th[256];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, work, NULL);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    double gflops = (double)threads * iters * CHAINS * lanes * 2 / secs / 1e9;
    if (gflops > best) best = gflops;
  }
  printf("{\"gflops\":%.1f,\"threads\":%d,\"vector_bits\":%d}\n", best, threads, lanes * 32);
  return 0;
}
