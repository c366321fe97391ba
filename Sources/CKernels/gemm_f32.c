// Short-block fp32 products (akv_gemm_f32.h): tiles of up to 4 rows x 3 output features, each
// element a dot product along k in 8 lanes (both operands read straight from their rows: no
// packing, no broadcasts), then one reduction tree shared by every tile shape.
#include "akv_gemm_f32.h"
#include <immintrin.h>

// The lane sums of four accumulators: per accumulator (l_i + l_{i+4}), then adjacent pairs, then
// the two halves. The same tree for each accumulator whatever the other three hold.
static inline __attribute__((always_inline)) __m128 reduce4(__m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
    const __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
    const __m256 h = _mm256_hadd_ps(ab, cd);   // (a01 a23 c01 c23 | b01 b23 d01 d23)
    const __m256 h2 = _mm256_hadd_ps(h, h);    // (a c a c | b d b d)
    return _mm_unpacklo_ps(_mm256_castps256_ps128(h2), _mm256_extractf128_ps(h2, 1));  // (a b c d)
}

// One tile: MT rows x FT features (constants after inlining).
static inline __attribute__((always_inline)) void tile(const float *a, int64_t lda, int64_t k, const float *w, int64_t ldw,
                                                      float *c, int64_t ldc, int accumulate, const int MT, const int FT) {
    __m256 acc[4][3];
    for (int r = 0; r < MT; r++)
        for (int f = 0; f < FT; f++) acc[r][f] = _mm256_setzero_ps();
    for (int64_t i = 0; i < k; i += 8) {
        __m256 wv[3];
        for (int f = 0; f < FT; f++) wv[f] = _mm256_loadu_ps(w + f * ldw + i);
        for (int r = 0; r < MT; r++) {
            const __m256 x = _mm256_loadu_ps(a + r * lda + i);
            for (int f = 0; f < FT; f++) acc[r][f] = _mm256_fmadd_ps(x, wv[f], acc[r][f]);
        }
    }
    const __m256 z = _mm256_setzero_ps();
    for (int r = 0; r < MT; r++) {
        float s[4];
        _mm_storeu_ps(s, reduce4(acc[r][0], FT > 1 ? acc[r][1] : z, FT > 2 ? acc[r][2] : z, z));
        for (int f = 0; f < FT; f++) c[r * ldc + f] = accumulate ? c[r * ldc + f] + s[f] : s[f];
    }
}

#define TILE_ROWS(MT)                                                                        \
    switch (ft) {                                                                            \
    case 3: tile(ar, lda, k, wf, ldw, cr, ldc, accumulate, MT, 3); break;                    \
    case 2: tile(ar, lda, k, wf, ldw, cr, ldc, accumulate, MT, 2); break;                    \
    default: tile(ar, lda, k, wf, ldw, cr, ldc, accumulate, MT, 1); break;                   \
    }

int akv_gemm_f32_rows(const float *a, int64_t rows, int64_t lda, int64_t k, const float *w, int64_t ldw,
                      int64_t f0, int64_t f1, float *c, int64_t ldc, int accumulate) {
    if (k % 8 != 0 || k <= 0) return -1;
    // Three weight rows stay in L1 while every row tile passes over them.
    for (int64_t f = f0; f < f1; f += 3) {
        const int ft = (int)(f1 - f < 3 ? f1 - f : 3);
        const float *wf = w + f * ldw;
        for (int64_t r = 0; r < rows; r += 4) {
            const float *ar = a + r * lda;
            float *cr = c + r * ldc + f;
            switch (rows - r < 4 ? rows - r : 4) {
            case 4: TILE_ROWS(4) break;
            case 3: TILE_ROWS(3) break;
            case 2: TILE_ROWS(2) break;
            default: TILE_ROWS(1) break;
            }
        }
    }
    return 0;
}
