// Q4_1 and Q8_0 decode products, 8 weight rows interleaved (see akv_q4x8.h; Q4_1 on int8
// activations: akv_q4x8_i8.h). The VNNI variants carry their own target attribute, so the library
// stays AVX2 and runs on any x86-64-v3 CPU.
#include "akv_q4x8.h"
#include "akv_q4x8_i8.h"
#include <immintrin.h>
#include <string.h>

// Bytes of one 8-row x 32-column block: Q4_1 f16 d[8], f16 m[8], 128 bytes of nibbles;
// Q8_0 f16 d[8], 256 int8 weights.
enum { ROWS = 8, Q4_BYTES = 160, Q8_BYTES = 272, MAX_N = 4 };

int akv_q4x8_vnni_supported(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl");
    }
    return cached;
}

int64_t akv_q4x8_packed_bytes(int64_t rows, int64_t cols) { return (rows / ROWS) * (cols / 32) * Q4_BYTES; }

// The 8 rows of 8-row group g, block b of a ggml Q4_1 matrix: their f16 scales and mins into the
// first 32 bytes of the packed block, their nibbles into q (row, column). Both Q4_1 layouts start so.
static void q4_1_group_block(const void *q4_1, int64_t row_bytes, int64_t g, int64_t b, uint8_t *dst, uint8_t q[ROWS][32]) {
    for (int r = 0; r < ROWS; r++) {
        const uint8_t *src = (const uint8_t *)q4_1 + (g * ROWS + r) * row_bytes + b * 20;
        memcpy(dst + 2 * r, src, 2);           // d (f16)
        memcpy(dst + 16 + 2 * r, src + 2, 2);  // m (f16)
        for (int e = 0; e < 16; e++) { q[r][e] = src[4 + e] & 15; q[r][e + 16] = src[4 + e] >> 4; }
    }
}

// Both Q4_1 layouts: per 8-row group and block, the scales and mins, then `nibbles` lays the
// 8 x 32 unpacked weights into the block's last 128 bytes.
static int pack_q4_1(const void *q4_1, int64_t row_bytes, int64_t rows, int64_t cols, void *packed,
                     void (*nibbles)(const uint8_t q[ROWS][32], uint8_t *dst)) {
    if (rows % ROWS != 0 || cols % 32 != 0 || row_bytes < cols / 32 * 20) return -1;
    const int64_t nb = cols / 32;
    for (int64_t g = 0; g < rows / ROWS; g++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *dst = (uint8_t *)packed + (g * nb + b) * Q4_BYTES;
            uint8_t q[ROWS][32];
            q4_1_group_block(q4_1, row_bytes, g, b, dst, q);
            nibbles(q, dst + 32);
        }
    return 0;
}

// int16 layout: vector j, 16-bit lane L holds four nibbles: nibble t is pair vector 4j+t's lane
// L, i.e. row L/2, column 2(4j+t) + L%2.
static void q16_nibbles(const uint8_t q[ROWS][32], uint8_t *dst) {
    for (int j = 0; j < 4; j++)
        for (int L = 0; L < 16; L++) {
            uint16_t v = 0;
            for (int t = 0; t < 4; t++) v |= (uint16_t)(q[L / 2][2 * (4 * j + t) + (L & 1)] << (4 * t));
            memcpy(dst + 32 * j + 2 * L, &v, 2);
        }
}

// int8 layout: word j, byte lane 4r+e: row r's column 8j+e (low nibble) and 8j+4+e (high nibble).
static void q8_nibbles(const uint8_t q[ROWS][32], uint8_t *dst) {
    for (int j = 0; j < 4; j++)
        for (int r = 0; r < ROWS; r++)
            for (int e = 0; e < 4; e++) dst[32 * j + 4 * r + e] = (uint8_t)(q[r][8 * j + e] | (q[r][8 * j + 4 + e] << 4));
}

int akv_q4x8_pack(const void *q4_1, int64_t row_bytes, int64_t rows, int64_t cols, void *packed) {
    return pack_q4_1(q4_1, row_bytes, rows, cols, packed, q16_nibbles);
}

int64_t akv_q4x8_i8_packed_bytes(int64_t rows, int64_t cols) { return akv_q4x8_packed_bytes(rows, cols); }

int akv_q4x8_i8_pack(const void *q4_1, int64_t row_bytes, int64_t rows, int64_t cols, void *packed) {
    return pack_q4_1(q4_1, row_bytes, rows, cols, packed, q8_nibbles);
}

static inline __attribute__((always_inline)) __m256i pair_dot_avx2(__m256i acc, __m256i w, __m256i x) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(w, x));
}

__attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")))
static inline __attribute__((always_inline)) __m256i pair_dot_vnni(__m256i acc, __m256i w, __m256i x) {
    return _mm256_dpwssd_epi32(acc, w, x);
}

// Pair vector p (0..15) of one 8-row block (see the header), per format: Q4_1 keeps four pair
// vectors in each 32-byte word (nibble t of a 16-bit lane is pair vector 4j+t), Q8_0 one in
// each 16 bytes.
#define PAIR_Q4_1(blk, p)                                                                                     \
    _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)((blk) + 32 + 32 * ((p) >> 2))), 4 * ((p) & 3)), \
                     _mm256_set1_epi16(0x000f))
#define PAIR_Q8_0(blk, p) _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)((blk) + 16 + 16 * (p))))

// One 8-row group against N (constant after inlining) activation rows. Per block, each pair
// vector is made once and multiplied against every activation's broadcast pair (two integer
// chains per activation, so they overlap); the int32 sums are exact, so their order does not
// matter. Then, per activation: acc += float(dot) * (d * xd) and, for Q4_1, acc += m * xsum, in
// that order, whatever N is.
#define GROUP_KERNEL(NAME, TARGET, DOT, BYTES, PAIR, HAS_MIN)                                                 \
    TARGET static inline __attribute__((always_inline)) void NAME##_group(                                    \
        const uint8_t *grp, const int N, const int16_t *const *xq, const float *const *xd,                    \
        const float *const *xs, int64_t nb, float *const *out) {                                              \
        __m256 acc[MAX_N];                                                                                    \
        for (int i = 0; i < N; i++) acc[i] = _mm256_setzero_ps();                                             \
        for (int64_t b = 0; b < nb; b++) {                                                                    \
            const uint8_t *blk = grp + b * (BYTES);                                                           \
            __m256i s[MAX_N][2];                                                                              \
            for (int i = 0; i < N; i++) s[i][0] = s[i][1] = _mm256_setzero_si256();                           \
            _Pragma("GCC unroll 16")                                                                          \
            for (int p = 0; p < 16; p++) {                                                                    \
                const __m256i w = PAIR(blk, p);                                                               \
                for (int i = 0; i < N; i++) {                                                                 \
                    int32_t pair;                                                                             \
                    memcpy(&pair, xq[i] + b * 32 + 2 * p, 4);                                                 \
                    s[i][p & 1] = DOT(s[i][p & 1], w, _mm256_set1_epi32(pair));                               \
                }                                                                                             \
            }                                                                                                 \
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));                          \
            const __m256 m = HAS_MIN ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16))) : d;     \
            for (int i = 0; i < N; i++) {                                                                     \
                const __m256i si = _mm256_add_epi32(s[i][0], s[i][1]);                                        \
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), _mm256_mul_ps(d, _mm256_set1_ps(xd[i][b])), acc[i]); \
                if (HAS_MIN) acc[i] = _mm256_fmadd_ps(m, _mm256_set1_ps(xs[i][b]), acc[i]);                  \
            }                                                                                                 \
        }                                                                                                     \
        for (int i = 0; i < N; i++) _mm256_storeu_ps(out[i], acc[i]);                                         \
    }                                                                                                         \
    GROUPS_DRIVER(NAME, TARGET, int16_t, BYTES)

// The group kernel over 8-row groups [g0, g1), the activation rows 4 at a time (then the tail),
// for either activation type: each activation row's result depends on that row alone.
#define GROUPS_DRIVER(NAME, TARGET, XQ_T, BYTES)                                                              \
    TARGET static void NAME##_groups(const uint8_t *packed, int64_t n, const XQ_T *xq, const float *xd,     \
                                     const float *xsum, float *y, int64_t ldy, int64_t cols,                  \
                                     int64_t g0, int64_t g1) {                                                \
        const int64_t nb = cols / 32;                                                                         \
        for (int64_t g = g0; g < g1; g++) {                                                                   \
            const uint8_t *grp = packed + g * nb * (BYTES);                                                   \
            for (int64_t i0 = 0; i0 < n; i0 += MAX_N) {                                                       \
                const int k = (int)(n - i0 < MAX_N ? n - i0 : MAX_N);                                         \
                const XQ_T *q[MAX_N];                                                                        \
                const float *d[MAX_N], *s[MAX_N];                                                             \
                float *o[MAX_N];                                                                              \
                for (int i = 0; i < k; i++) {                                                                 \
                    q[i] = xq + (i0 + i) * cols; d[i] = xd + (i0 + i) * nb; s[i] = xsum ? xsum + (i0 + i) * nb : NULL;      \
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

#define VNNI_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")))
GROUP_KERNEL(q4x8_avx2, , pair_dot_avx2, Q4_BYTES, PAIR_Q4_1, 1)
GROUP_KERNEL(q4x8_vnni, VNNI_TARGET, pair_dot_vnni, Q4_BYTES, PAIR_Q4_1, 1)
GROUP_KERNEL(q8x8_avx2, , pair_dot_avx2, Q8_BYTES, PAIR_Q8_0, 0)
GROUP_KERNEL(q8x8_vnni, VNNI_TARGET, pair_dot_vnni, Q8_BYTES, PAIR_Q8_0, 0)

int akv_gemm_q4x8_q16(const void *packed, int64_t n, const int16_t *xq, const float *xd, const float *xsum,
                      float *y, int64_t ldy, int64_t cols, int64_t group_begin, int64_t group_end, int use_vnni) {
    if (cols % 32 != 0 || n < 1) return -1;
    if (use_vnni && !akv_q4x8_vnni_supported()) return -1;
    if (use_vnni) q4x8_vnni_groups(packed, n, xq, xd, xsum, y, ldy, cols, group_begin, group_end);
    else q4x8_avx2_groups(packed, n, xq, xd, xsum, y, ldy, cols, group_begin, group_end);
    return 0;
}

int64_t akv_q8x8_packed_bytes(int64_t rows, int64_t cols) { return (rows / ROWS) * (cols / 32) * Q8_BYTES; }

int akv_q8x8_pack(const void *q8_0, int64_t row_bytes, int64_t rows, int64_t cols, void *packed) {
    if (rows % ROWS != 0 || cols % 32 != 0 || row_bytes < cols / 32 * 34) return -1;
    const int64_t nb = cols / 32;
    for (int64_t g = 0; g < rows / ROWS; g++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *dst = (uint8_t *)packed + (g * nb + b) * Q8_BYTES;
            for (int r = 0; r < ROWS; r++) {
                const uint8_t *src = (const uint8_t *)q8_0 + (g * ROWS + r) * row_bytes + b * 34;
                memcpy(dst + 2 * r, src, 2);  // d (f16)
                // Pair vector p, byte lane L: row L/2, column 2p + L%2.
                for (int p = 0; p < 16; p++)
                    for (int e = 0; e < 2; e++) dst[16 + 16 * p + 2 * r + e] = src[2 + 2 * p + e];
            }
        }
    return 0;
}

int akv_gemm_q8x8_q16(const void *packed, int64_t n, const int16_t *xq, const float *xd,
                      float *y, int64_t ldy, int64_t cols, int64_t group_begin, int64_t group_end, int use_vnni) {
    if (cols % 32 != 0 || n < 1) return -1;
    if (use_vnni && !akv_q4x8_vnni_supported()) return -1;
    if (use_vnni) q8x8_vnni_groups(packed, n, xq, xd, NULL, y, ldy, cols, group_begin, group_end);
    else q8x8_avx2_groups(packed, n, xq, xd, NULL, y, ldy, cols, group_begin, group_end);
    return 0;
}

// ---- int8 activations (akv_q4x8_i8.h) ----

// Word j of an int8-layout block as its two vectors of 8 rows x 4 columns (low and high nibbles).
static inline __attribute__((always_inline)) void nibble_vectors(const uint8_t *blk, int j, __m256i *lo, __m256i *hi) {
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i word = _mm256_loadu_si256((const __m256i *)(blk + 32 + 32 * j));
    *lo = _mm256_and_si256(word, low);
    *hi = _mm256_and_si256(_mm256_srli_epi16(word, 4), low);
}

// Four activations (columns 4p..4p+3 of a block) broadcast to every 32-bit lane.
static inline __attribute__((always_inline)) __m256i quad(const int8_t *xb, int p) {
    int32_t v;
    memcpy(&v, xb + 4 * p, 4);
    return _mm256_set1_epi32(v);
}

// Per activation, the int32 dot of each of the block's 8 rows. AVX2: int16 partial sums over the
// block (exact, see akv_q4x8_i8.h), then adjacent pairs added to int32.
static inline __attribute__((always_inline)) void block_dots_avx2(const uint8_t *blk, const int N, const int8_t *const *xb, __m256i *out) {
    __m256i s[MAX_N];
    for (int i = 0; i < N; i++) s[i] = _mm256_setzero_si256();
    _Pragma("GCC unroll 4")
    for (int j = 0; j < 4; j++) {
        __m256i lo, hi;
        nibble_vectors(blk, j, &lo, &hi);
        for (int i = 0; i < N; i++) {
            s[i] = _mm256_add_epi16(s[i], _mm256_maddubs_epi16(lo, quad(xb[i], 2 * j)));
            s[i] = _mm256_add_epi16(s[i], _mm256_maddubs_epi16(hi, quad(xb[i], 2 * j + 1)));
        }
    }
    for (int i = 0; i < N; i++) out[i] = _mm256_madd_epi16(s[i], _mm256_set1_epi16(1));
}

VNNI_TARGET static inline __attribute__((always_inline)) void block_dots_vnni(const uint8_t *blk, const int N, const int8_t *const *xb, __m256i *out) {
    for (int i = 0; i < N; i++) out[i] = _mm256_setzero_si256();
    _Pragma("GCC unroll 4")
    for (int j = 0; j < 4; j++) {
        __m256i lo, hi;
        nibble_vectors(blk, j, &lo, &hi);
        for (int i = 0; i < N; i++) {
            out[i] = _mm256_dpbusd_epi32(out[i], lo, quad(xb[i], 2 * j));
            out[i] = _mm256_dpbusd_epi32(out[i], hi, quad(xb[i], 2 * j + 1));
        }
    }
}

// One 8-row group against N activation rows; per activation and block: acc += float(dot) *
// (d * xd), then acc += m * xsum, in that order whatever N is (as the int16 Q4_1 kernel).
#define GROUP_KERNEL_I8(NAME, TARGET, DOTS)                                                                   \
    TARGET static inline __attribute__((always_inline)) void NAME##_group(                                    \
        const uint8_t *grp, const int N, const int8_t *const *xq, const float *const *xd,                     \
        const float *const *xs, int64_t nb, float *const *out) {                                              \
        __m256 acc[MAX_N];                                                                                    \
        for (int i = 0; i < N; i++) acc[i] = _mm256_setzero_ps();                                             \
        for (int64_t b = 0; b < nb; b++) {                                                                    \
            const uint8_t *blk = grp + b * Q4_BYTES;                                                          \
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
    GROUPS_DRIVER(NAME, TARGET, int8_t, Q4_BYTES)

GROUP_KERNEL_I8(q4x8_i8_avx2, , block_dots_avx2)
GROUP_KERNEL_I8(q4x8_i8_vnni, VNNI_TARGET, block_dots_vnni)

int akv_gemm_q4x8_q8(const void *packed, int64_t n, const int8_t *xq, const float *xd, const float *xsum,
                     float *y, int64_t ldy, int64_t cols, int64_t group_begin, int64_t group_end, int use_vnni) {
    if (cols % 32 != 0 || n < 1) return -1;
    if (use_vnni && !akv_q4x8_vnni_supported()) return -1;
    if (use_vnni) q4x8_i8_vnni_groups(packed, n, xq, xd, xsum, y, ldy, cols, group_begin, group_end);
    else q4x8_i8_avx2_groups(packed, n, xq, xd, xsum, y, ldy, cols, group_begin, group_end);
    return 0;
}
