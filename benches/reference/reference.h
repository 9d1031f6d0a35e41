// What the C references of benches/reference/ share: a clock, a comparison for qsort, and the
// float32 file of 256x256 frames they read, opened and mapped.
#ifndef TESSERA_REFERENCE_H
#define TESSERA_REFERENCE_H
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#define FRAME (256 * 256) /* pixels per frame */

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static int by_value(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

// Opens `path` and returns its descriptor and, in `frames`, how many whole frames it holds, rounded
// down to a multiple of `unit` frames; exits with a message when it cannot, or when fewer than
// `at_least` such frames are there.
static int open_frames(const char *path, size_t unit, size_t at_least, size_t *frames) {
  int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) { perror(path); exit(1); }
  *frames = (size_t)st.st_size / (FRAME * sizeof(float)) / unit * unit;
  if (*frames < at_least) {
    fprintf(stderr, "%s: %lld bytes, fewer than %zu frames of 256x256 float32\n", path, (long long)st.st_size, at_least);
    exit(1);
  }
  return fd;
}

// Maps the first `frames` frames of `fd` read-only; `populate`: all pages mapped now, so that page
// faults are not measured (otherwise each first touch faults, as bench_membw's limit measures it).
static const float *map_frames(int fd, size_t frames, int populate) {
  const float *map = mmap(NULL, frames * FRAME * sizeof(float), PROT_READ, MAP_PRIVATE | (populate ? MAP_POPULATE : 0), fd, 0);
  if (map == MAP_FAILED) { perror("mmap"); exit(1); }
  return map;
}
#endif
