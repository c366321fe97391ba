#include "akv_pool.h"
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define AKV_MAX_THREADS 64
#define AKV_SPIN_ROUNDS (1 << 12)  // ~0.1-0.3 ms of pause loops before a worker sleeps

static struct {
    pthread_once_t once;
    int threads;                     // total, caller included
    pthread_mutex_t busy;            // one job at a time
    pthread_mutex_t sleep_lock;
    pthread_cond_t wake;
    _Atomic uint64_t generation;     // bumped once per job
    _Atomic int sleepers;
    _Atomic int remaining;           // worker parts not yet finished
    // The current job (written before generation is bumped).
    akv_range_fn fn;
    void *ctx;
    int64_t n, parts;
} pool = {.once = PTHREAD_ONCE_INIT, .threads = 0,
          .busy = PTHREAD_MUTEX_INITIALIZER, .sleep_lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static void run_part(int64_t part) {
    const int64_t lo = pool.n * part / pool.parts, hi = pool.n * (part + 1) / pool.parts;
    if (lo < hi) pool.fn(pool.ctx, lo, hi);
}

static void *worker_main(void *arg) {
    const int64_t index = (int64_t)(intptr_t)arg;  // 1..threads-1; part 0 is the caller's
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
        if (index < pool.parts) {
            run_part(index);
            atomic_fetch_sub(&pool.remaining, 1);
        }
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
    const int threads = akv_pool_threads();
    if (parts > threads) parts = threads;
    if (parts <= 1 || n <= 1 || pthread_mutex_trylock(&pool.busy) != 0) {
        fn(ctx, 0, n);
        return;
    }
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    pool.parts = parts;
    // Every worker sees each generation; only those with index < parts run a part.
    atomic_store(&pool.remaining, (int)(parts - 1));
    atomic_fetch_add(&pool.generation, 1);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.sleep_lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.sleep_lock);
    }
    run_part(0);
    while (atomic_load(&pool.remaining) > 0) _mm_pause();
    pthread_mutex_unlock(&pool.busy);
}
