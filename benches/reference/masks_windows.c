// masks_windows.c: udf_apply_masks' float32 kernel, written in C, against a plain one-stream sum of
// the same frames: how close to the file-read limit can that kernel come on this machine, with no
// query engine around it? (issue 5; benches/RESULTS.md, thirteenth session)
//
// The masks are the comparison's 16 rings on 256x256 frames (peer_common.rings16_params: centre
// ((256-1)/2, (256-1)/2), ring k where (8k)^2 < d^2 <= (8k+8)^2). Their runs are cut into windows
// of 16 pixels as Tessera's `run_windows` cuts them, and each window takes the steps of
// `add_windows_f32_avx512` (src/udf/builtin/masks.rs): two zero-masking conversions to f64, one add
// into the mask's 8 lanes, which stay in a register across windows of the same mask; optionally a
// prefetcht1 of the same pixels of the next frame.
//
// Build and run (x86-64 with AVX-512F; benches/reference.sh does both):
//   gcc -O2 -mavx512f -mavx2 -fopenmp -o masks_windows masks_windows.c
//   ./masks_windows target/peer/data/large_f32.raw [fresh]
// It maps the file (pre-populated, so page faults are not measured; with `fresh`, mapped anew and
// not populated for every repetition, so faults are measured, as bench_membw's limit measures them)
// and prints, for one and two threads, each thread taking half of the frames: the plain sum, the
// kernel without prefetch, and the kernel with the next-frame prefetch (medians of 5, three rounds).
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "reference.h"

#define W 256
#define MASKS 16

typedef struct { uint32_t p; uint16_t m, bits; } Window;
static Window windows[FRAME];
static int n_windows;

// The runs of the 16 rings in frame order, cut into windows as `run_windows` cuts them.
static void build_windows(void) {
  static int label[FRAME];
  const double c = (W - 1) / 2.0, width = (W / 2.0) / MASKS;
  for (int y = 0; y < W; y++)
    for (int x = 0; x < W; x++) {
      double d2 = (y - c) * (y - c) + (x - c) * (x - c);
      label[y * W + x] = -1;
      for (int k = 0; k < MASKS; k++)
        if (d2 > (k * width) * (k * width) && d2 <= ((k + 1) * width) * ((k + 1) * width)) label[y * W + x] = k;
    }
  for (int p = 0; p < FRAME;) {
    if (label[p] < 0) { p++; continue; }
    int m = label[p], s = p;
    while (p < FRAME && label[p] == m) p++;
    for (int q = s; q < p; q += 16) {
      int len = p - q < 16 ? p - q : 16, start = q < FRAME - 16 ? q : FRAME - 16;
      windows[n_windows++] = (Window){(uint32_t)start, (uint16_t)m, (uint16_t)(((1u << len) - 1) << (q - start))};
    }
  }
}

// Adds each mask's sum over `x` to its 8 lanes (`lanes`: MASKS x 8, zeroed here).
static __attribute__((noipa)) void masks(const float *x, const float *next, double *lanes, int prefetch) {
  memset(lanes, 0, MASKS * 8 * sizeof(double));
  size_t current = (size_t)-1;
  __m512d acc = _mm512_setzero_pd();
  for (int i = 0; i < n_windows; i++) {
    Window w = windows[i];
    if (prefetch) _mm_prefetch((const char *)(next + w.p), _MM_HINT_T1);
    __m512d v = _mm512_add_pd(_mm512_maskz_cvtps_pd((uint8_t)w.bits, _mm256_loadu_ps(x + w.p)),
                              _mm512_maskz_cvtps_pd((uint8_t)(w.bits >> 8), _mm256_loadu_ps(x + w.p + 8)));
    if (w.m != current) {
      if (current != (size_t)-1) _mm512_storeu_pd(lanes + current * 8, acc);
      current = w.m;
      acc = _mm512_loadu_pd(lanes + current * 8);
    }
    acc = _mm512_add_pd(acc, v);
  }
  if (current != (size_t)-1) _mm512_storeu_pd(lanes + current * 8, acc);
}

// A plain sum of one frame: one aligned stream, two conversions and two adds per cache line.
static __attribute__((noipa)) double plain(const float *x) {
  __m512d a = _mm512_setzero_pd(), b = a;
  for (int i = 0; i < FRAME; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    a = _mm512_add_pd(a, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    b = _mm512_add_pd(b, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(a, b));
}

int main(int argc, char **argv) {
  int fresh = argc == 3 && strcmp(argv[2], "fresh") == 0;
  if (argc != 2 && !fresh) { fprintf(stderr, "usage: %s FILE [fresh] (float32 frames of 256x256, e.g. target/peer/data/large_f32.raw)\n", argv[0]); return 2; }
  if (!__builtin_cpu_supports("avx512f")) { fprintf(stderr, "this reference needs AVX-512F\n"); return 2; }
  size_t frames;
  int fd = open_frames(argv[1], 1, 8, &frames);
  size_t n = frames * FRAME * sizeof(float);
  const float *map = map_frames(fd, frames, !fresh);
  build_windows();

  double lanes[MASKS * 8] __attribute__((aligned(64))), sink = 0;
  double t0 = now();
  for (int r = 0; r < 4000; r++) { masks(map + (size_t)(r % 4) * FRAME, map, lanes, 0); sink += lanes[3]; }
  double masks_us = (now() - t0) / 4000 * 1e6;
  t0 = now();
  for (int r = 0; r < 4000; r++) sink += plain(map + (size_t)(r % 4) * FRAME);
  double plain_us = (now() - t0) / 4000 * 1e6;
  printf("%d windows per frame; four frames in cache: the kernel %.2f us per frame, a plain sum %.2f us\n", n_windows, masks_us, plain_us);

  static const char *names[] = {"plain one-stream sum", "kernel, no prefetch", "kernel, next-frame prefetch"};
  for (int round = 0; round < 3; round++)
    for (int mode = 0; mode < 3; mode++)
      for (int threads = 1; threads <= 2; threads++) {
        double rate[5];
        for (int rep = 0; rep < 5; rep++) {
          if (fresh) {
            munmap((void *)map, n);
            map = map_frames(fd, frames, 0);
          }
          double t1 = now(), total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
          {
            int t = omp_get_thread_num();
            double l[MASKS * 8] __attribute__((aligned(64)));
            size_t lo = frames * t / threads, hi = frames * (t + 1) / threads;
            for (size_t f = lo; f < hi; f++) {
              const float *x = map + f * FRAME, *next = f + 1 < hi ? x + FRAME : x;
              if (mode == 0) total += plain(x);
              else { masks(x, next, l, mode == 2); total += l[3]; }
            }
          }
          rate[rep] = n / (now() - t1) / 1e9;
          sink += total;
        }
        qsort(rate, 5, sizeof rate[0], by_value);
        printf("round %d  %-28s %d thread%s  median %6.2f GB/s\n", round, names[mode], threads, threads > 1 ? "s" : " ", rate[2]);
      }
  if (sink == 1.5) printf("(sink)\n");
  return 0;
}
