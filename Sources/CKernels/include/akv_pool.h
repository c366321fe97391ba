// A small spin-then-sleep thread pool for the forward pass. Decode issues a few hundred tiny
// parallel loops per token; waking GCD workers for each cost more than the work itself.
#pragma once
#include <stdint.h>

typedef void (*akv_range_fn)(void *ctx, int64_t begin, int64_t end);

/// Sets the number of threads (caller included) used by akv_pool_run; call before first use.
void akv_pool_set_threads(int threads);
int akv_pool_threads(void);

/// Runs fn over `parts` equal contiguous sub-ranges of [0, n) on the pool and returns when all
/// are done. If another thread is using the pool, runs everything inline on the caller.
void akv_pool_run(int64_t n, int64_t parts, akv_range_fn fn, void *ctx);
