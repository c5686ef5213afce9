#!/usr/bin/env bash
# What glibc's allocator-walking calls cost (docs/configuration.md, "Overload"; docs/benchmarks.md,
# "Memory overload"): mallinfo2 (the heap in use, which the overload guard does not read) and
# malloc_trim (which it calls at most once a second while overloaded), each over a heap of N
# small chunks of which all but one in KEEP were freed, against one read of /proc/self/statm.
#   cluster/bench/allocator-walk.sh            # N = 100 000 and 1 000 000; KEEP = 2 and 100
# Needs gcc.
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/walk.c" <<'C'
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static double ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
static long resident_mb(void) {
    long size, pages; FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &size, &pages) != 2) return -1;
    fclose(f); return pages * sysconf(_SC_PAGESIZE) >> 20;
}
int main(int argc, char **argv) {
    int n = atoi(argv[1]), keep = atoi(argv[2]);
    void **chunks = malloc(sizeof(void *) * n);
    for (int i = 0; i < n; i++) chunks[i] = malloc(64 + (i % 16) * 32);
    for (int i = 0; i < n; i++) if (i % keep) free(chunks[i]);
    double start = ms(); struct mallinfo2 info = mallinfo2(); double walk = ms() - start;
    long before = resident_mb();
    start = ms(); resident_mb(); double statm = ms() - start;
    start = ms(); malloc_trim(0); double trim = ms() - start;
    printf("chunks %8d, 1 in %3d kept: %7zu free chunks; mallinfo2 %7.2f ms; statm %.3f ms; malloc_trim %7.2f ms, resident %4ld -> %4ld MB\n",
           n, keep, info.ordblks, walk, statm, trim, before, resident_mb());
    return 0;
}
C
gcc -O2 "$dir/walk.c" -o "$dir/walk"
for n in 100000 1000000; do
  for keep in 2 100; do "$dir/walk" "$n" "$keep"; done
done
