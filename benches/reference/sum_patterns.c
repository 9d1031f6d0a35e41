// sum_patterns.c: udf_sum's access pattern on float32 frames, written in C, against one plain stream
// of the same frames: what the pattern itself costs on this machine, with no query engine around it
// (issue 5; benches/RESULTS.md, twelfth and thirteenth sessions).
//
// Two threads take 2 MiB batches (eight 256x256 float32 frames) alternately, as the partitions of a
// Tessera scan share their batches. Each batch is summed in one of five ways, interleaved, medians of
// 7:
//   - one stream: each frame summed on its own, in order (udf_sum_sig's pattern);
//   - S = 1, 2, 4 or 8 frames side by side per pass, into 512 KiB of f64 sums per thread, 1 024
//     pixels at a time (udf_sum's pattern is S = 8).
//
// Build and run (benches/reference.sh does both):
//   gcc -O2 -march=native -fopenmp -o sum_patterns sum_patterns.c
//   ./sum_patterns target/peer/data/large_f32.raw
// The file is mapped pre-populated, so page faults are not measured.
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "reference.h"

#define BATCH 8     /* frames per batch */
#define BLOCK 1024  /* pixels per pass */

// Seconds to sum `batches` batches of `map` with `side` frames per pass (0: one stream).
static double run(const float *map, size_t batches, int side, double *sink) {
  double t0 = now(), total = 0;
#pragma omp parallel num_threads(2) reduction(+ : total)
  {
    int t = omp_get_thread_num();
    double *acc = aligned_alloc(64, FRAME * sizeof(double));
    memset(acc, 0, FRAME * sizeof(double));
    for (size_t b = t; b < batches; b += 2) {
      const float *base = map + b * BATCH * FRAME;
      if (side == 0) {
        for (int f = 0; f < BATCH; f++) {
          float lanes[16] = {0};
          const float *x = base + (size_t)f * FRAME;
          for (size_t i = 0; i < FRAME; i += 16)
            for (int k = 0; k < 16; k++) lanes[k] += x[i + k];
          for (int k = 0; k < 16; k++) total += lanes[k];
        }
        continue;
      }
      for (size_t p = 0; p < FRAME; p += BLOCK)
        for (int g = 0; g < BATCH; g += side) {
          const float *f[8];
          for (int j = 0; j < side; j++) f[j] = base + (size_t)(g + j) * FRAME + p;
          double *a = acc + p;
          if (side == 8)
            for (int i = 0; i < BLOCK; i++)
              a[i] += (double)(((f[0][i] + f[1][i]) + (f[2][i] + f[3][i])) + ((f[4][i] + f[5][i]) + (f[6][i] + f[7][i])));
          else if (side == 4)
            for (int i = 0; i < BLOCK; i++) a[i] += (double)((f[0][i] + f[1][i]) + (f[2][i] + f[3][i]));
          else if (side == 2)
            for (int i = 0; i < BLOCK; i++) a[i] += (double)(f[0][i] + f[1][i]);
          else
            for (int i = 0; i < BLOCK; i++) a[i] += (double)f[0][i];
        }
    }
    for (int i = 0; i < FRAME; i += 4096) total += acc[i];
    free(acc);
  }
  *sink += total;
  return now() - t0;
}

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: %s FILE (float32 frames of 256x256, e.g. target/peer/data/large_f32.raw)\n", argv[0]); return 2; }
  size_t frames;
  int fd = open_frames(argv[1], BATCH, 2 * BATCH, &frames);
  size_t batches = frames / BATCH, n = frames * FRAME * sizeof(float);
  const float *map = map_frames(fd, frames, 1);
  static const int sides[] = {0, 1, 2, 4, 8};
  static const char *names[] = {"one stream, per-frame sums", "1 frame per pass", "2 frames per pass", "4 frames per pass", "8 frames per pass (udf_sum)"};
  enum { REPS = 7 };
  double rate[5][REPS], sink = 0;
  for (int r = 0; r < REPS; r++)
    for (int k = 0; k < 5; k++) rate[k][r] = n / run(map, batches, sides[k], &sink) / 1e9;
  for (int k = 0; k < 5; k++) {
    qsort(rate[k], REPS, sizeof rate[k][0], by_value);
    printf("%-30s median %6.2f GB/s (range %.2f to %.2f)\n", names[k], rate[k][REPS / 2], rate[k][0], rate[k][REPS - 1]);
  }
  if (sink == 1.5) printf("(sink)\n");
  return 0;
}
