#include "akv_pool.h"
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define AKV_MAX_THREADS 64
#define AKV_SPIN_ROUNDS (1 << 12)  // ~0.1-0.3 ms of pause loops before a worker sleeps

// Each job is cut into a few fixed chunks per part that the caller and the workers claim one at a
// time. A worker that the OS has not scheduled yet (a server's request threads share the cores
// with decoding) then costs nothing: the caller runs the chunks it would have run instead of
// spinning until it wakes. Chunk boundaries depend on (n, parts) only, never on who ran what, so
// results do not depend on scheduling.
#define AKV_CHUNKS_PER_PART 4
#define AKV_MAX_CHUNKS_PER_PART 32  // long, even jobs ask for more (a shorter tail where one thread waits)
_Static_assert(AKV_MAX_THREADS < 256 && AKV_MAX_THREADS * AKV_MAX_CHUNKS_PER_PART < 4096, "the claim word holds parts in 8 bits, chunks in 12");

static struct {
    pthread_once_t once;
    int threads;                     // total, caller included
    pthread_mutex_t busy;            // one job at a time
    pthread_mutex_t sleep_lock;
    pthread_cond_t wake;
    _Atomic uint64_t generation;     // bumped once per job (wakes the workers)
    _Atomic int sleepers;
    // The current job's claim word: generation (high 32 bits), the threads it may use (bits
    // 24-31), its chunk count (bits 12-23) and the next unclaimed chunk (low 12 bits), so that a
    // claim can never be taken for another job.
    _Atomic uint64_t claim;
    _Atomic int64_t done;            // chunks of the current job finished
    // The current job (written before the claim word is published; stable while a chunk is
    // unclaimed or running, since the caller returns only after every chunk finished).
    akv_range_fn fn;
    void *ctx;
    int64_t n;
} pool = {.once = PTHREAD_ONCE_INIT, .threads = 0,
          .busy = PTHREAD_MUTEX_INITIALIZER, .sleep_lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

// Claims and runs chunks of job `gen` until none is left (or another job has begun).
static void work(uint32_t gen, int slot) {
    uint64_t cl = atomic_load_explicit(&pool.claim, memory_order_acquire);
    for (;;) {
        const int parts = (int)((cl >> 24) & 0xff);
        const int64_t chunks = (int64_t)((cl >> 12) & 0xfff), next = (int64_t)(cl & 0xfff);
        if ((uint32_t)(cl >> 32) != gen || next >= chunks || slot >= parts) return;
        if (!atomic_compare_exchange_weak_explicit(&pool.claim, &cl, cl + 1, memory_order_acq_rel, memory_order_acquire)) continue;
        const int64_t lo = pool.n * next / chunks, hi = pool.n * (next + 1) / chunks;
        if (lo < hi) pool.fn(pool.ctx, lo, hi, slot);
        atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
        cl = atomic_load_explicit(&pool.claim, memory_order_acquire);
    }
}

static void *worker_main(void *arg) {
    const int slot = (int)(intptr_t)arg;  // 1..threads-1; the caller is slot 0
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load(&pool.generation)) == seen && spins < AKV_SPIN_ROUNDS) { _mm_pause(); spins++; }
        if (g == seen) {
            pthread_mutex_lock(&pool.sleep_lock);
            atomic_fetch_add(&pool.sleepers, 1);
            while ((g = atomic_load(&pool.generation)) == seen) pthread_cond_wait(&pool.wake, &pool.sleep_lock);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.sleep_lock);
        }
        seen = g;
        work((uint32_t)g, slot);
    }
    return NULL;
}

static void start_workers(void) {
    if (pool.threads <= 0) pool.threads = 1;
    if (pool.threads > AKV_MAX_THREADS) pool.threads = AKV_MAX_THREADS;
    for (int i = 1; i < pool.threads; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker_main, (void *)(intptr_t)i) != 0) { pool.threads = i; break; }
        pthread_detach(t);
    }
}

void akv_pool_set_threads(int threads) {
    if (pool.threads == 0) pool.threads = threads;
}

int akv_pool_threads(void) {
    pthread_once(&pool.once, start_workers);
    return pool.threads;
}

void akv_pool_run(int64_t n, int64_t parts, akv_range_fn fn, void *ctx) {
    akv_pool_run_chunked(n, parts, AKV_CHUNKS_PER_PART, fn, ctx);
}

void akv_pool_run_chunked(int64_t n, int64_t parts, int64_t chunks_per_part, akv_range_fn fn, void *ctx) {
    const int threads = akv_pool_threads();
    if (chunks_per_part < 1) chunks_per_part = 1;
    if (chunks_per_part > AKV_MAX_CHUNKS_PER_PART) chunks_per_part = AKV_MAX_CHUNKS_PER_PART;
    if (parts > threads) parts = threads;
    if (parts <= 1 || n <= 1 || pthread_mutex_trylock(&pool.busy) != 0) {
        fn(ctx, 0, n, 0);
        return;
    }
    int64_t chunks = parts * chunks_per_part;
    if (chunks > n) chunks = n;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    const uint64_t g = atomic_load(&pool.generation) + 1;
    atomic_store_explicit(&pool.claim, ((g & 0xffffffffu) << 32) | ((uint64_t)parts << 24) | ((uint64_t)chunks << 12),
                          memory_order_release);
    atomic_store(&pool.generation, g);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.sleep_lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.sleep_lock);
    }
    work((uint32_t)g, 0);
    while (atomic_load_explicit(&pool.done, memory_order_acquire) < chunks) _mm_pause();
    pthread_mutex_unlock(&pool.busy);
}
