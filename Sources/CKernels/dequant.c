// Block layouts follow ggml (ggml-common.h); each decoder is checked in the tests against
// the gguf Python package's dequantize on generated blocks.
#include "akv_dequant.h"
#include <immintrin.h>
#include <string.h>

float akv_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
uint16_t akv_f32_to_f16(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

float akv_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t akv_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

void akv_f16_to_f32_n(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

void akv_f32_to_f16_n(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

void akv_bf16_to_f32_n(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = akv_bf16_to_f32(src[i]);
}

void akv_f32_to_bf16_n(const float *src, uint16_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = akv_f32_to_bf16(src[i]);
}

static inline uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline float rdh(const uint8_t *p) { return _cvtsh_ss(rd16(p)); }

int akv_type_supported(uint32_t type) {
    switch (type) {
    case AKV_F32: case AKV_F16: case AKV_BF16: case AKV_Q4_0: case AKV_Q4_1: case AKV_Q5_0:
    case AKV_Q5_1: case AKV_Q8_0: case AKV_Q4_K: case AKV_Q5_K: case AKV_Q6_K: return 1;
    default: return 0;
    }
}

int64_t akv_type_block_elems(uint32_t type) {
    switch (type) {
    case AKV_F32: case AKV_F16: case AKV_BF16: return 1;
    case AKV_Q4_0: case AKV_Q4_1: case AKV_Q5_0: case AKV_Q5_1: case AKV_Q8_0: return 32;
    case AKV_Q4_K: case AKV_Q5_K: case AKV_Q6_K: return 256;
    default: return 0;
    }
}

int64_t akv_type_block_bytes(uint32_t type) {
    switch (type) {
    case AKV_F32: return 4;
    case AKV_F16: case AKV_BF16: return 2;
    case AKV_Q4_0: return 18;
    case AKV_Q4_1: return 20;
    case AKV_Q5_0: return 22;
    case AKV_Q5_1: return 24;
    case AKV_Q8_0: return 34;
    case AKV_Q4_K: return 144;
    case AKV_Q5_K: return 176;
    case AKV_Q6_K: return 210;
    default: return 0;
    }
}

// The 6-bit scale/min pairs of Q4_K and Q5_K, packed into 12 bytes for 8 sub-blocks.
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

int akv_dequantize(uint32_t type, const void *src_, float *y, int64_t n) {
    const int64_t qk = akv_type_block_elems(type);
    if (qk == 0 || !akv_type_supported(type) || n % qk != 0) return -1;
    const uint8_t *src = (const uint8_t *)src_;
    const int64_t nb = n / qk, bs = akv_type_block_bytes(type);
    switch (type) {
    case AKV_F32: memcpy(y, src, (size_t)n * 4); return 0;
    case AKV_F16: akv_f16_to_f32_n((const uint16_t *)src, y, n); return 0;
    case AKV_BF16: akv_bf16_to_f32_n((const uint16_t *)src, y, n); return 0;
    default: break;
    }
    for (int64_t b = 0; b < nb; b++, y += qk) {
        const uint8_t *p = src + b * bs;
        switch (type) {
        case AKV_Q4_0: {
            const float d = rdh(p);
            const uint8_t *qs = p + 2;
            for (int j = 0; j < 16; j++) {
                y[j] = ((int)(qs[j] & 0xF) - 8) * d;
                y[j + 16] = ((int)(qs[j] >> 4) - 8) * d;
            }
            break;
        }
        case AKV_Q4_1: {
            const float d = rdh(p), m = rdh(p + 2);
            const uint8_t *qs = p + 4;
            for (int j = 0; j < 16; j++) {
                y[j] = (qs[j] & 0xF) * d + m;
                y[j + 16] = (qs[j] >> 4) * d + m;
            }
            break;
        }
        case AKV_Q5_0: case AKV_Q5_1: {
            const int has_min = type == AKV_Q5_1;
            const float d = rdh(p), m = has_min ? rdh(p + 2) : 0.0f;
            uint32_t qh;
            memcpy(&qh, p + (has_min ? 4 : 2), 4);
            const uint8_t *qs = p + (has_min ? 8 : 6);
            const int offset = has_min ? 0 : 16;
            for (int j = 0; j < 16; j++) {
                const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
                y[j] = (((qs[j] & 0xF) | h0) - offset) * d + m;
                y[j + 16] = (((qs[j] >> 4) | h1) - offset) * d + m;
            }
            break;
        }
        case AKV_Q8_0: {
            const float d = rdh(p);
            const int8_t *qs = (const int8_t *)(p + 2);
            for (int j = 0; j < 32; j++) y[j] = qs[j] * d;
            break;
        }
        case AKV_Q4_K: case AKV_Q5_K: {
            const int five = type == AKV_Q5_K;
            const float d = rdh(p), dmin = rdh(p + 2);
            const uint8_t *scales = p + 4;
            const uint8_t *qh = p + 16;               // Q5_K only
            const uint8_t *q = p + (five ? 48 : 16);
            float *out = y;
            uint8_t u1 = 1, u2 = 2;
            for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
                uint8_t sc, mn;
                scale_min_k4(is, scales, &sc, &mn);
                const float d1 = d * sc, m1 = dmin * mn;
                scale_min_k4(is + 1, scales, &sc, &mn);
                const float d2 = d * sc, m2 = dmin * mn;
                for (int l = 0; l < 32; l++) *out++ = d1 * ((q[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)) - m1;
                for (int l = 0; l < 32; l++) *out++ = d2 * ((q[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - m2;
                u1 <<= 2;
                u2 <<= 2;
            }
            break;
        }
        case AKV_Q6_K: {
            const uint8_t *ql = p, *qh = p + 128;
            const int8_t *sc = (const int8_t *)(p + 192);
            const float d = rdh(p + 208);
            float *out = y;
            for (int half = 0; half < 2; half++, out += 128, ql += 64, qh += 32, sc += 8) {
                for (int l = 0; l < 32; l++) {
                    const int is = l / 16;
                    const int q1 = (int)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    const int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    const int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    const int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    out[l] = d * sc[is + 0] * q1;
                    out[l + 32] = d * sc[is + 2] * q2;
                    out[l + 64] = d * sc[is + 4] * q3;
                    out[l + 96] = d * sc[is + 6] * q4;
                }
            }
            break;
        }
        default: return -1;
        }
    }
    return 0;
}
