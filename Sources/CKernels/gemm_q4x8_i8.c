// Q4_1 decode products on int8 activations, 8 weight rows interleaved (see akv_q4x8_i8.h). The
// VNNI variant carries its own target attribute, so the library stays AVX2.
#include "akv_q4x8_i8.h"
#include "akv_q4x8.h"
#include <immintrin.h>
#include <string.h>

enum { ROWS = 8, BYTES = 160, MAX_N = 4 };

void akv_quantize_q8(const float *x, int64_t cols, int8_t *xq, float *xd, float *xsum) {
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < cols / 32; b++) {
        const float *xb = x + b * 32;
        __m256 v[4], amax = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_mask, v[i]));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float m = _mm_cvtss_f32(m4);
        const float d = m / 127.0f, id = m > 0 ? 127.0f / m : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int i = 0; i < 4; i++) q[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[i], vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        // packs works per 128-bit lane: int32 -> int16 -> int8, then one permute restores order.
        const __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
        const __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(xq + b * 32), p8);
        xd[b] = d;
        xsum[b] = d * (float)_mm_cvtsi128_si32(s4);
    }
}

int64_t akv_q4x8_i8_packed_bytes(int64_t rows, int64_t cols) { return (rows / ROWS) * (cols / 32) * BYTES; }

int akv_q4x8_i8_pack(const void *q4_1, int64_t row_bytes, int64_t rows, int64_t cols, void *packed) {
    if (rows % ROWS != 0 || cols % 32 != 0 || row_bytes < cols / 32 * 20) return -1;
    const int64_t nb = cols / 32;
    for (int64_t g = 0; g < rows / ROWS; g++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *dst = (uint8_t *)packed + (g * nb + b) * BYTES;
            uint8_t q[ROWS][32];
            for (int r = 0; r < ROWS; r++) {
                const uint8_t *src = (const uint8_t *)q4_1 + (g * ROWS + r) * row_bytes + b * 20;
                memcpy(dst + 2 * r, src, 2);           // d (f16)
                memcpy(dst + 16 + 2 * r, src + 2, 2);  // m (f16)
                for (int e = 0; e < 16; e++) { q[r][e] = src[4 + e] & 15; q[r][e + 16] = src[4 + e] >> 4; }
            }
            for (int j = 0; j < 4; j++)
                for (int r = 0; r < ROWS; r++)
                    for (int e = 0; e < 4; e++) dst[32 + 32 * j + 4 * r + e] = (uint8_t)(q[r][8 * j + e] | (q[r][8 * j + 4 + e] << 4));
        }
    return 0;
}

// Four activations (columns 4p..4p+3 of block b) broadcast to every 32-bit lane.
static inline __attribute__((always_inline)) __m256i quad(const int8_t *xb, int p) {
    int32_t v;
    memcpy(&v, xb + 4 * p, 4);
    return _mm256_set1_epi32(v);
}

// Block dot of one weight vector group, per activation: the int32 sums of each of the 8 rows.
// AVX2: int16 partial sums over the block (exact, see the header), then pairs added to int32.
static inline __attribute__((always_inline)) void block_dots_avx2(const uint8_t *blk, const int N, const int8_t *const *xb, __m256i *out) {
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i s[MAX_N];
    for (int i = 0; i < N; i++) s[i] = _mm256_setzero_si256();
    _Pragma("GCC unroll 4")
    for (int j = 0; j < 4; j++) {
        const __m256i word = _mm256_loadu_si256((const __m256i *)(blk + 32 + 32 * j));
        const __m256i lo = _mm256_and_si256(word, low), hi = _mm256_and_si256(_mm256_srli_epi16(word, 4), low);
        for (int i = 0; i < N; i++) {
            s[i] = _mm256_add_epi16(s[i], _mm256_maddubs_epi16(lo, quad(xb[i], 2 * j)));
            s[i] = _mm256_add_epi16(s[i], _mm256_maddubs_epi16(hi, quad(xb[i], 2 * j + 1)));
        }
    }
    const __m256i ones = _mm256_set1_epi16(1);
    for (int i = 0; i < N; i++) out[i] = _mm256_madd_epi16(s[i], ones);
}

#define VNNI_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")))
VNNI_TARGET static inline __attribute__((always_inline)) void block_dots_vnni(const uint8_t *blk, const int N, const int8_t *const *xb, __m256i *out) {
    const __m256i low = _mm256_set1_epi8(0x0f);
    for (int i = 0; i < N; i++) out[i] = _mm256_setzero_si256();
    _Pragma("GCC unroll 4")
    for (int j = 0; j < 4; j++) {
        const __m256i word = _mm256_loadu_si256((const __m256i *)(blk + 32 + 32 * j));
        const __m256i lo = _mm256_and_si256(word, low), hi = _mm256_and_si256(_mm256_srli_epi16(word, 4), low);
        for (int i = 0; i < N; i++) {
            out[i] = _mm256_dpbusd_epi32(out[i], lo, quad(xb[i], 2 * j));
            out[i] = _mm256_dpbusd_epi32(out[i], hi, quad(xb[i], 2 * j + 1));
        }
    }
}

// One 8-row group against N activation rows; per activation and block: acc += float(dot) *
// (d * xd), then acc += m * xsum, in that order whatever N is (so batching changes nothing).
#define GROUP_KERNEL(NAME, TARGET, DOTS)                                                                      \
    TARGET static inline __attribute__((always_inline)) void NAME##_group(                                    \
        const uint8_t *grp, const int N, const int8_t *const *xq, const float *const *xd,                     \
        const float *const *xs, int64_t nb, float *const *out) {                                              \
        __m256 acc[MAX_N];                                                                                    \
        for (int i = 0; i < N; i++) acc[i] = _mm256_setzero_ps();                                             \
        for (int64_t b = 0; b < nb; b++) {                                                                    \
            const uint8_t *blk = grp + b * BYTES;                                                             \
            const int8_t *xb[MAX_N];                                                                          \
            for (int i = 0; i < N; i++) xb[i] = xq[i] + b * 32;                                               \
            __m256i dots[MAX_N];                                                                              \
            DOTS(blk, N, xb, dots);                                                                           \
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));                          \
            const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16)));                   \
            for (int i = 0; i < N; i++) {                                                                     \
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots[i]), _mm256_mul_ps(d, _mm256_set1_ps(xd[i][b])), acc[i]); \
                acc[i] = _mm256_fmadd_ps(m, _mm256_set1_ps(xs[i][b]), acc[i]);                                \
            }                                                                                                 \
        }                                                                                                     \
        for (int i = 0; i < N; i++) _mm256_storeu_ps(out[i], acc[i]);                                         \
    }                                                                                                         \
    TARGET static void NAME##_groups(const uint8_t *packed, int64_t n, const int8_t *xq, const float *xd,      \
                                     const float *xsum, float *y, int64_t ldy, int64_t cols,                  \
                                     int64_t g0, int64_t g1) {                                                \
        const int64_t nb = cols / 32;                                                                         \
        for (int64_t g = g0; g < g1; g++) {                                                                   \
            const uint8_t *grp = packed + g * nb * BYTES;                                                     \
            for (int64_t i0 = 0; i0 < n; i0 += MAX_N) {                                                       \
                const int k = (int)(n - i0 < MAX_N ? n - i0 : MAX_N);                                         \
                const int8_t *q[MAX_N];                                                                       \
                const float *d[MAX_N], *s[MAX_N];                                                             \
                float *o[MAX_N];                                                                              \
                for (int i = 0; i < k; i++) {                                                                 \
                    q[i] = xq + (i0 + i) * cols; d[i] = xd + (i0 + i) * nb; s[i] = xsum + (i0 + i) * nb;      \
                    o[i] = y + (i0 + i) * ldy + g * ROWS;                                                     \
                }                                                                                             \
                switch (k) {                                                                                  \
                case 4: NAME##_group(grp, 4, q, d, s, nb, o); break;                                          \
                case 3: NAME##_group(grp, 3, q, d, s, nb, o); break;                                          \
                case 2: NAME##_group(grp, 2, q, d, s, nb, o); break;                                          \
                default: NAME##_group(grp, 1, q, d, s, nb, o); break;                                         \
                }                                                                                             \
            }                                                                                                 \
        }                                                                                                     \
    }

GROUP_KERNEL(q4x8_i8_avx2, , block_dots_avx2)
GROUP_KERNEL(q4x8_i8_vnni, VNNI_TARGET, block_dots_vnni)

int akv_gemm_q4x8_q8(const void *packed, int64_t n, const int8_t *xq, const float *xd, const float *xsum,
                     float *y, int64_t ldy, int64_t cols, int64_t group_begin, int64_t group_end, int use_vnni) {
    if (cols % 32 != 0 || n < 1) return -1;
    if (use_vnni && !akv_q4x8_vnni_supported()) return -1;
    if (use_vnni) q4x8_i8_vnni_groups(packed, n, xq, xd, xsum, y, ldy, cols, group_begin, group_end);
    else q4x8_i8_avx2_groups(packed, n, xq, xd, xsum, y, ldy, cols, group_begin, group_end);
    return 0;
}
