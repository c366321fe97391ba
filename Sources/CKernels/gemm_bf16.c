// BF16 prefill products (see akv_gemm_bf16.h). The functions that use AVX-512 carry their own
// target attribute, so the rest of the library stays AVX2 and runs on any x86-64-v3 CPU.
#include "akv_gemm_bf16.h"
#include <immintrin.h>
#include <string.h>

int akv_bf16_supported(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
    }
    return cached;
}

static inline uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);  // NaN stays NaN
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

int64_t akv_bf16_packed_bytes(int64_t n, int64_t k) { return ((n + 31) / 32) * (k / 2) * 64 * 2; }

void akv_bf16_pack(const float *w, int64_t n, int64_t k, uint16_t *packed) {
    const int64_t blocks = (n + 31) / 32, pairs = k / 2;
    for (int64_t b = 0; b < blocks; b++)
        for (int64_t p = 0; p < pairs; p++) {
            uint16_t *d = packed + (b * pairs + p) * 64;
            for (int64_t c = 0; c < 32; c++) {
                const int64_t col = b * 32 + c;
                d[2 * c] = col < n ? to_bf16(w[col * k + 2 * p]) : 0;
                d[2 * c + 1] = col < n ? to_bf16(w[col * k + 2 * p + 1]) : 0;
            }
        }
}

// 32 values an instruction (vcvtne2ps2bf16 rounds to nearest even, as to_bf16 does).
__attribute__((target("avx512f,avx512bf16")))
static int64_t convert_avx512(const float *x, int64_t count, uint16_t *out) {
    int64_t i = 0;
    for (; i + 32 <= count; i += 32) {
        const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
        _mm512_storeu_si512(out + i, (__m512i)v);
    }
    return i;
}

void akv_bf16_convert(const float *x, int64_t count, uint16_t *out) {
    const int64_t done = akv_bf16_supported() ? convert_avx512(x, count, out) : 0;
    for (int64_t i = done; i < count; i++) out[i] = to_bf16(x[i]);
}

// Up to 8 rows x 32 columns a tile: 16 accumulators, 2 weight vectors and a broadcast stay in
// registers. `rows` is a constant in every call below (the switch), so each row count gets its
// own unrolled copy; with a run-time count the accumulators would live on the stack.
#define MR 8

__attribute__((target("avx512f,avx512bf16"), always_inline))
static inline void tile(const uint32_t *a, const int rows, int64_t pairs, const uint16_t *bp,
                        float *c, int64_t ldc, __mmask16 m0, __mmask16 m1, int accumulate) {
    __m512 acc[MR][2];
    for (int r = 0; r < rows; r++) { acc[r][0] = _mm512_setzero_ps(); acc[r][1] = _mm512_setzero_ps(); }
    for (int64_t p = 0; p < pairs; p++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + p * 64);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + p * 64 + 32);
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[r * pairs + p]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
        }
    }
    for (int r = 0; r < rows; r++) {
        float *o = c + r * ldc;
        if (accumulate) {
            acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_maskz_loadu_ps(m0, o));
            if (m1) acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_maskz_loadu_ps(m1, o + 16));
        }
        _mm512_mask_storeu_ps(o, m0, acc[r][0]);
        if (m1) _mm512_mask_storeu_ps(o + 16, m1, acc[r][1]);
    }
}

__attribute__((target("avx512f,avx512bf16")))
static void tile_rows(const uint32_t *a, int64_t rows, int64_t pairs, const uint16_t *bp,
                      float *c, int64_t ldc, __mmask16 m0, __mmask16 m1, int accumulate) {
    switch (rows) {
    case 1: tile(a, 1, pairs, bp, c, ldc, m0, m1, accumulate); break;
    case 2: tile(a, 2, pairs, bp, c, ldc, m0, m1, accumulate); break;
    case 3: tile(a, 3, pairs, bp, c, ldc, m0, m1, accumulate); break;
    case 4: tile(a, 4, pairs, bp, c, ldc, m0, m1, accumulate); break;
    case 5: tile(a, 5, pairs, bp, c, ldc, m0, m1, accumulate); break;
    case 6: tile(a, 6, pairs, bp, c, ldc, m0, m1, accumulate); break;
    case 7: tile(a, 7, pairs, bp, c, ldc, m0, m1, accumulate); break;
    default: tile(a, 8, pairs, bp, c, ldc, m0, m1, accumulate); break;
    }
}

int akv_gemm_bf16(const uint16_t *a, int64_t rows, int64_t k, const uint16_t *packed, int64_t n,
                  int64_t block0, int64_t block1, float *c, int64_t ldc, int accumulate) {
    if (!akv_bf16_supported() || k % 2) return 0;
    const int64_t pairs = k / 2;
    for (int64_t b = block0; b < block1; b++) {
        const int64_t n0 = b * 32, left = n - n0;
        if (left <= 0) break;
        const __mmask16 m0 = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
        const __mmask16 m1 = left >= 32 ? 0xffff : left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
        const uint16_t *bp = packed + b * pairs * 64;
        for (int64_t m = 0; m < rows; m += MR) {
            tile_rows((const uint32_t *)(a + m * k), rows - m < MR ? rows - m : MR, pairs, bp, c + m * ldc + n0, ldc, m0, m1, accumulate);
        }
    }
    return 1;
}
