// A small spin-then-sleep thread pool for the forward pass. Decode issues a few hundred tiny
// parallel loops per token; waking GCD workers for each cost more than the work itself.
#pragma once
#include <stdint.h>

/// `slot` names the thread running the range (0 the caller, 1..threads-1 the workers): a body may
/// use it to pick per-thread scratch, since two ranges never run at once on one slot.
typedef void (*akv_range_fn)(void *ctx, int64_t begin, int64_t end, int slot);

/// Sets the number of threads (caller included) used by akv_pool_run; call before first use.
void akv_pool_set_threads(int threads);
int akv_pool_threads(void);

/// Runs fn over contiguous sub-ranges of [0, n) on up to `parts` threads and returns when all
/// are done: a few fixed chunks per part, claimed one at a time by whoever is free (the caller
/// included), so a thread the OS has not scheduled holds nothing up. The chunk boundaries depend
/// on n and parts only. If another thread is using the pool, runs everything inline on the caller.
void akv_pool_run(int64_t n, int64_t parts, akv_range_fn fn, void *ctx);
/// The same with `chunks_per_part` chunks per part (1...32; akv_pool_run takes 4): more for long
/// jobs of even work, where the last chunk's wait is what they lose.
void akv_pool_run_chunked(int64_t n, int64_t parts, int64_t chunks_per_part, akv_range_fn fn, void *ctx);
