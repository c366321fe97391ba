#include "akv_kernels.h"
#include <immintrin.h>
#include <math.h>
#include <string.h>

void akv_rmsnorm_rows(const float *x, const float *w, float *out, int64_t rows, int64_t n, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *o = out + r * n;
        double ss = 0.0;
        for (int64_t i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
        for (int64_t i = 0; i < n; i++) o[i] = xr[i] * scale * w[i];
    }
}

void akv_rope_table(const int32_t *pos, int64_t rows, const double *inv_freq, int64_t half,
                    float *cos_out, float *sin_out) {
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < half; i++) {
            double a = (double)pos[r] * inv_freq[i];
            cos_out[r * half + i] = (float)cos(a);
            sin_out[r * half + i] = (float)sin(a);
        }
    }
}

void akv_rope_apply(float *x, int64_t rows, int64_t ld, int64_t heads, int64_t head_dim,
                    const float *cos_t, const float *sin_t, float sign) {
    int64_t half = head_dim / 2;
    for (int64_t r = 0; r < rows; r++) {
        const float *c = cos_t + r * half;
        const float *s = sin_t + r * half;
        for (int64_t h = 0; h < heads; h++) {
            float *v = x + r * ld + h * head_dim;
            for (int64_t i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                float si = sign * s[i];
                v[i] = a * c[i] - b * si;
                v[i + half] = b * c[i] + a * si;
            }
        }
    }
}

// exp(x) for 8 floats: x = n ln2 + r with |r| <= ln2/2, degree-6 polynomial for e^r, then
// scale by 2^n through the exponent bits. Relative error ~2e-7 (a few ulp); inputs below
// -87 flush to 0, which softmax and SiLU want anyway.
static inline __m256 exp256(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

void akv_silu_mul(float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = exp256(_mm256_xor_ps(g, neg));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void akv_softmax_prefix(float *x, int64_t n, int64_t width) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    int64_t i = 0;
    __m256 acc = _mm256_setzero_ps();
    const __m256 vm = _mm256_set1_ps(m);
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float tail[8];
    _mm256_storeu_ps(tail, acc);
    double sum = 0.0;
    for (int k = 0; k < 8; k++) sum += tail[k];
    for (; i < n; i++) { float e = expf(x[i] - m); x[i] = e; sum += e; }
    const float inv = (float)(1.0 / sum);
    const __m256 vinv = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
    for (; i < n; i++) x[i] *= inv;
    for (i = n; i < width; i++) x[i] = 0.0f;
}

static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline float f16_load(const uint8_t *p) {
    uint16_t h; memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// Q4_1 block: f16 d, f16 m, 16 bytes; element j (<16) = low nibble of qs[j], j+16 = high nibble.
static float dot_q4_1_row(const uint8_t *row, const float *x, int64_t nblocks) {
    __m256 acc_q = _mm256_setzero_ps();
    float acc_m = 0.0f;
    const __m128i mask = _mm_set1_epi8(0x0f);
    for (int64_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = row + b * 20;
        float d = f16_load(blk), m = f16_load(blk + 2);
        __m128i qs = _mm_loadu_si128((const __m128i *)(blk + 4));
        __m128i lo = _mm_and_si128(qs, mask);
        __m128i hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
        const float *xb = x + b * 32;
        __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
        __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
        __m256 q0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
        __m256 q1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
        __m256 q2 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
        __m256 q3 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
        __m256 s = _mm256_mul_ps(q0, x0);
        s = _mm256_fmadd_ps(q1, x1, s);
        s = _mm256_fmadd_ps(q2, x2, s);
        s = _mm256_fmadd_ps(q3, x3, s);
        acc_q = _mm256_fmadd_ps(_mm256_set1_ps(d), s, acc_q);
        if (m != 0.0f) {
            __m256 xs = _mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3));
            acc_m += m * hsum256(xs);
        }
    }
    return hsum256(acc_q) + acc_m;
}

// Q4_0 block: f16 d, 16 bytes; value = d * (nibble - 8).
static float dot_q4_0_row(const uint8_t *row, const float *x, int64_t nblocks) {
    __m256 acc = _mm256_setzero_ps();
    const __m128i mask = _mm_set1_epi8(0x0f);
    const __m256 eight = _mm256_set1_ps(8.0f);
    for (int64_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = row + b * 18;
        float d = f16_load(blk);
        __m128i qs = _mm_loadu_si128((const __m128i *)(blk + 2));
        __m128i lo = _mm_and_si128(qs, mask);
        __m128i hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
        const float *xb = x + b * 32;
        __m256 q0 = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), eight);
        __m256 q1 = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), eight);
        __m256 q2 = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), eight);
        __m256 q3 = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), eight);
        __m256 s = _mm256_mul_ps(q0, _mm256_loadu_ps(xb));
        s = _mm256_fmadd_ps(q1, _mm256_loadu_ps(xb + 8), s);
        s = _mm256_fmadd_ps(q2, _mm256_loadu_ps(xb + 16), s);
        s = _mm256_fmadd_ps(q3, _mm256_loadu_ps(xb + 24), s);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), s, acc);
    }
    return hsum256(acc);
}

// Q8_0 block: f16 d, 32 int8.
static float dot_q8_0_row(const uint8_t *row, const float *x, int64_t nblocks) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = row + b * 34;
        float d = f16_load(blk);
        __m128i qa = _mm_loadu_si128((const __m128i *)(blk + 2));
        __m128i qb = _mm_loadu_si128((const __m128i *)(blk + 18));
        const float *xb = x + b * 32;
        __m256 q0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qa));
        __m256 q1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(qa, 8)));
        __m256 q2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qb));
        __m256 q3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(qb, 8)));
        __m256 s = _mm256_mul_ps(q0, _mm256_loadu_ps(xb));
        s = _mm256_fmadd_ps(q1, _mm256_loadu_ps(xb + 8), s);
        s = _mm256_fmadd_ps(q2, _mm256_loadu_ps(xb + 16), s);
        s = _mm256_fmadd_ps(q3, _mm256_loadu_ps(xb + 24), s);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), s, acc);
    }
    return hsum256(acc);
}

int akv_gemv_quant(uint32_t ggml_type, const void *w, int64_t row_bytes, const float *x, float *y,
                   int64_t cols, int64_t row_begin, int64_t row_end) {
    if (cols % 32 != 0) return -1;
    const uint8_t *base = (const uint8_t *)w;
    int64_t nb = cols / 32;
    switch (ggml_type) {
    case 3: for (int64_t r = row_begin; r < row_end; r++) y[r] = dot_q4_1_row(base + r * row_bytes, x, nb); return 0;
    case 2: for (int64_t r = row_begin; r < row_end; r++) y[r] = dot_q4_0_row(base + r * row_bytes, x, nb); return 0;
    case 8: for (int64_t r = row_begin; r < row_end; r++) y[r] = dot_q8_0_row(base + r * row_bytes, x, nb); return 0;
    default: return -1;
    }
}

void akv_gemv_f32_rows(const float *w, int64_t ld, const float *x, float *y, int64_t cols,
                       int64_t row_begin, int64_t row_end) {
    for (int64_t r = row_begin; r < row_end; r++) {
        const float *wr = w + r * ld;
        __m256 acc = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 8 <= cols; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i), _mm256_loadu_ps(x + i), acc);
        float s = hsum256(acc);
        for (; i < cols; i++) s += wr[i] * x[i];
        y[r] = s;
    }
}

// One key's score: the same fma chain and horizontal sum for every key, so grouping keys (below)
// changes no bit of any score.
static inline __attribute__((always_inline)) float key_dot(const float *qr, const float *kj, int64_t head_dim) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= head_dim; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(qr + i), _mm256_loadu_ps(kj + i), acc);
    float s = hsum256(acc);
    for (; i < head_dim; i++) s += qr[i] * kj[i];
    return s;
}

void akv_attention_head_rows(const float *q, int64_t ldq, const float *k, const float *v, int64_t ldkv,
                             float *out, int64_t ldo, int64_t head_dim, const int64_t *visible,
                             int64_t row_begin, int64_t row_end, float scale, float *scratch) {
    for (int64_t r = row_begin; r < row_end; r++) {
        const float *qr = q + r * ldq;
        int64_t n = visible[r];
        int64_t j = 0;
        if (head_dim == 64) {
            // Four keys at a time: four independent fma chains instead of one chain's latency per
            // key (each chain the fmas of key_dot, in its order).
            __m256 qv[8];
            for (int i = 0; i < 8; i++) qv[i] = _mm256_loadu_ps(qr + 8 * i);
            for (; j + 4 <= n; j += 4) {
                __m256 a[4];
                for (int t = 0; t < 4; t++) {
                    const float *kj = k + (j + t) * ldkv;
                    a[t] = _mm256_setzero_ps();
                    for (int i = 0; i < 8; i++) a[t] = _mm256_fmadd_ps(qv[i], _mm256_loadu_ps(kj + 8 * i), a[t]);
                }
                for (int t = 0; t < 4; t++) scratch[j + t] = hsum256(a[t]) * scale;
            }
        }
        for (; j < n; j++) scratch[j] = key_dot(qr, k + j * ldkv, head_dim) * scale;
        akv_softmax_prefix(scratch, n, n);
        float *o = out + r * ldo;
        if (head_dim == 64) {
            // The output row stays in registers over all keys (same order of fmas per lane).
            __m256 ov[8];
            for (int i = 0; i < 8; i++) ov[i] = _mm256_setzero_ps();
            for (int64_t jj = 0; jj < n; jj++) {
                const float *vj = v + jj * ldkv;
                const __m256 p = _mm256_set1_ps(scratch[jj]);
                for (int i = 0; i < 8; i++) ov[i] = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + 8 * i), ov[i]);
            }
            for (int i = 0; i < 8; i++) _mm256_storeu_ps(o + 8 * i, ov[i]);
            continue;
        }
        for (int64_t i = 0; i < head_dim; i++) o[i] = 0.0f;
        for (int64_t jj = 0; jj < n; jj++) {
            const float *vj = v + jj * ldkv;
            __m256 p = _mm256_set1_ps(scratch[jj]);
            int64_t i = 0;
            for (; i + 8 <= head_dim; i += 8) _mm256_storeu_ps(o + i, _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + i), _mm256_loadu_ps(o + i)));
            for (; i < head_dim; i++) o[i] += scratch[jj] * vj[i];
        }
    }
}

// ---- Integer decode path: int16 activations x 4/8-bit weights (AVX2 madd_epi16). ----
// int16 keeps activation rounding ~1e-5 relative (int8, as llama.cpp uses, moved SmolLM2
// logits by up to ~1 through outlier channels) while the weights stay integer too; int8 stays
// an opt-in (akv_quantize_q8 below, akv_q4x8_i8.h).

// One 32-block of x rounded to integers in [-limit, limit] with scale d = max|x| / limit (as int32
// lanes in q[0..3], in order); returns their sum. Shared by the int16 and int8 quantizers.
static inline int32_t round_block(const float *xb, float limit, __m256i q[4], float *d) {
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    __m256 v[4], amax = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(xb + 8 * i);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_mask, v[i]));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float m = _mm_cvtss_f32(m4);
    *d = m / limit;
    const __m256 vid = _mm256_set1_ps(m > 0 ? limit / m : 0.0f);
    for (int i = 0; i < 4; i++) q[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[i], vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
    return _mm_cvtsi128_si32(s4);
}

void akv_quantize_q16(const float *x, int64_t cols, int16_t *xq, float *xd, float *xsum) {
    for (int64_t b = 0; b < cols / 32; b++) {
        __m256i q[4];
        float d;
        const int32_t sum = round_block(x + b * 32, 32767.0f, q, &d);
        // packs works per 128-bit lane; the permute restores element order.
        __m256i p01 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xD8);
        __m256i p23 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[2], q[3]), 0xD8);
        _mm256_storeu_si256((__m256i *)(xq + b * 32), p01);
        _mm256_storeu_si256((__m256i *)(xq + b * 32 + 16), p23);
        xd[b] = d;
        xsum[b] = d * (float)sum;
    }
}

void akv_quantize_q8(const float *x, int64_t cols, int8_t *xq, float *xd, float *xsum) {
    for (int64_t b = 0; b < cols / 32; b++) {
        __m256i q[4];
        float d;
        const int32_t sum = round_block(x + b * 32, 127.0f, q, &d);
        // packs works per 128-bit lane: int32 -> int16 -> int8, then one permute restores order.
        const __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
        const __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(xq + b * 32), p8);
        xd[b] = d;
        xsum[b] = d * (float)sum;
    }
}

// Sum over a 32-element block of w[i] * x[i] as 8 int32 lanes; w given as two halves of 16 bytes.
static inline __m256 block_dot16(__m128i w_lo16, __m128i w_hi16, int w_signed, const int16_t *x) {
    const __m256i a = w_signed ? _mm256_cvtepi8_epi16(w_lo16) : _mm256_cvtepu8_epi16(w_lo16);
    const __m256i b = w_signed ? _mm256_cvtepi8_epi16(w_hi16) : _mm256_cvtepu8_epi16(w_hi16);
    const __m256i p = _mm256_add_epi32(_mm256_madd_epi16(a, _mm256_loadu_si256((const __m256i *)x)),
                                       _mm256_madd_epi16(b, _mm256_loadu_si256((const __m256i *)(x + 16))));
    return _mm256_cvtepi32_ps(p);
}

// Even blocks accumulate into acc0, odd ones into acc1 (two chains hide the FMA latency); the
// loop takes two blocks a turn, so there is no branch on the block's parity.
static inline __m256 q4_1_q16_block(const uint8_t *blk, const int16_t *x, float xd, __m256 acc) {
    const __m128i mask = _mm_set1_epi8(0x0f);
    const __m128i raw = _mm_loadu_si128((const __m128i *)(blk + 4));
    const __m256 p = block_dot16(_mm_and_si128(raw, mask), _mm_and_si128(_mm_srli_epi16(raw, 4), mask), 0, x);
    return _mm256_fmadd_ps(_mm256_set1_ps(f16_load(blk) * xd), p, acc);
}

static float dot_q4_1_q16(const uint8_t *row, const int16_t *xq, const float *xd, const float *xsum, int64_t nb) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float accm = 0.0f;
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        acc0 = q4_1_q16_block(row + b * 20, xq + b * 32, xd[b], acc0);
        accm = fmaf(f16_load(row + b * 20 + 2), xsum[b], accm);
        acc1 = q4_1_q16_block(row + (b + 1) * 20, xq + (b + 1) * 32, xd[b + 1], acc1);
        accm = fmaf(f16_load(row + (b + 1) * 20 + 2), xsum[b + 1], accm);
    }
    if (b < nb) {
        acc0 = q4_1_q16_block(row + b * 20, xq + b * 32, xd[b], acc0);
        accm = fmaf(f16_load(row + b * 20 + 2), xsum[b], accm);
    }
    return hsum256(_mm256_add_ps(acc0, acc1)) + accm;
}

static float dot_q4_0_q16(const uint8_t *row, const int16_t *xq, const float *xd, const float *xsum, int64_t nb) {
    const __m128i mask = _mm_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    float acco = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + b * 18;
        const float d = f16_load(blk);
        const __m128i raw = _mm_loadu_si128((const __m128i *)(blk + 2));
        const __m256 p = block_dot16(_mm_and_si128(raw, mask), _mm_and_si128(_mm_srli_epi16(raw, 4), mask), 0, xq + b * 32);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * xd[b]), p, acc);
        acco += d * xsum[b];
    }
    return hsum256(acc) - 8.0f * acco;  // nibble - 8
}

static float dot_q8_0_q16(const uint8_t *row, const int16_t *xq, const float *xd, int64_t nb) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + b * 34;
        const __m256 p = block_dot16(_mm_loadu_si128((const __m128i *)(blk + 2)), _mm_loadu_si128((const __m128i *)(blk + 18)), 1, xq + b * 32);
        const __m256 sc = _mm256_set1_ps(f16_load(blk) * xd[b]);
        if (b & 1) acc1 = _mm256_fmadd_ps(sc, p, acc1); else acc0 = _mm256_fmadd_ps(sc, p, acc0);
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}

int akv_gemv_quant_q16(uint32_t ggml_type, const void *w, int64_t row_bytes, const int16_t *xq, const float *xd,
                       const float *xsum, float *y, int64_t cols, int64_t row_begin, int64_t row_end) {
    if (cols % 32 != 0) return -1;
    const uint8_t *base = (const uint8_t *)w;
    const int64_t nb = cols / 32;
    switch (ggml_type) {
    case 3: for (int64_t r = row_begin; r < row_end; r++) y[r] = dot_q4_1_q16(base + r * row_bytes, xq, xd, xsum, nb); return 0;
    case 2: for (int64_t r = row_begin; r < row_end; r++) y[r] = dot_q4_0_q16(base + r * row_bytes, xq, xd, xsum, nb); return 0;
    case 8: for (int64_t r = row_begin; r < row_end; r++) y[r] = dot_q8_0_q16(base + r * row_bytes, xq, xd, nb); return 0;
    default: return -1;
    }
}

// Group kernels of batched decode: one weight row against up to 4 activation rows, the block's
// scales and unpacked weights computed once and used for all of them. Per activation the
// arithmetic (operations, their order, the accumulator split) is exactly dot_q4_1_q16's /
// dot_q8_0_row's, so each result is bitwise the single-row kernel's.
#define AKV_GROUP 4
// Written for a constant N (the wrappers below instantiate 1..4): the loops over the group then
// unroll and every accumulator lives in a register. With N known only at run time the compiler
// kept them in stack arrays, and each block paid a store-to-load round trip per row.
static inline __attribute__((always_inline)) void q4_1_q16_group(const uint8_t *row, const int N, const int16_t *const *xq,
                                                                 const float *const *xd, const float *const *xsum, int64_t nb, float *out) {
    const __m128i mask = _mm_set1_epi8(0x0f);
    __m256 acc0[AKV_GROUP], acc1[AKV_GROUP];
    float accm[AKV_GROUP];
    const int16_t *q[AKV_GROUP];
    const float *d_x[AKV_GROUP], *s_x[AKV_GROUP];
    for (int i = 0; i < N; i++) {
        acc0[i] = _mm256_setzero_ps(); acc1[i] = _mm256_setzero_ps(); accm[i] = 0.0f;
        q[i] = xq[i]; d_x[i] = xd[i]; s_x[i] = xsum[i];
    }
    // Two blocks a turn, the even one into acc0 and the odd one into acc1: dot_q4_1_q16's order.
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + b * 20;
        const __m128i raw = _mm_loadu_si128((const __m128i *)(blk + 4));
        const __m256i a = _mm256_cvtepu8_epi16(_mm_and_si128(raw, mask));
        const __m256i c = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), mask));
        const float d = f16_load(blk), m = f16_load(blk + 2);
        const int odd = (int)(b & 1);
        for (int i = 0; i < N; i++) {
            const int16_t *x = q[i] + b * 32;
            const __m256i pi = _mm256_add_epi32(_mm256_madd_epi16(a, _mm256_loadu_si256((const __m256i *)x)),
                                                _mm256_madd_epi16(c, _mm256_loadu_si256((const __m256i *)(x + 16))));
            const __m256 p = _mm256_cvtepi32_ps(pi);
            const __m256 sc = _mm256_set1_ps(d * d_x[i][b]);
            if (odd) acc1[i] = _mm256_fmadd_ps(sc, p, acc1[i]); else acc0[i] = _mm256_fmadd_ps(sc, p, acc0[i]);
            accm[i] = fmaf(m, s_x[i][b], accm[i]);
        }
    }
    for (int i = 0; i < N; i++) out[i] = hsum256(_mm256_add_ps(acc0[i], acc1[i])) + accm[i];
}

static void dot_q4_1_q16_group(const uint8_t *row, int n, const int16_t *const *xq, const float *const *xd,
                               const float *const *xsum, int64_t nb, float *out) {
    switch (n) {
    case 4: q4_1_q16_group(row, 4, xq, xd, xsum, nb, out); break;
    case 3: q4_1_q16_group(row, 3, xq, xd, xsum, nb, out); break;
    case 2: q4_1_q16_group(row, 2, xq, xd, xsum, nb, out); break;
    default: q4_1_q16_group(row, 1, xq, xd, xsum, nb, out); break;
    }
}

static inline __attribute__((always_inline)) void q8_0_row_group(const uint8_t *row, const int N, const float *const *x, int64_t nblocks, float *out) {
    __m256 acc[AKV_GROUP];
    const float *xs[AKV_GROUP];
    for (int i = 0; i < N; i++) { acc[i] = _mm256_setzero_ps(); xs[i] = x[i]; }
    for (int64_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = row + b * 34;
        const float d = f16_load(blk);
        const __m128i qa = _mm_loadu_si128((const __m128i *)(blk + 2));
        const __m128i qb = _mm_loadu_si128((const __m128i *)(blk + 18));
        const __m256 q0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qa));
        const __m256 q1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(qa, 8)));
        const __m256 q2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qb));
        const __m256 q3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(qb, 8)));
        const __m256 vd = _mm256_set1_ps(d);
        for (int i = 0; i < N; i++) {
            const float *xb = xs[i] + b * 32;
            __m256 s = _mm256_mul_ps(q0, _mm256_loadu_ps(xb));
            s = _mm256_fmadd_ps(q1, _mm256_loadu_ps(xb + 8), s);
            s = _mm256_fmadd_ps(q2, _mm256_loadu_ps(xb + 16), s);
            s = _mm256_fmadd_ps(q3, _mm256_loadu_ps(xb + 24), s);
            acc[i] = _mm256_fmadd_ps(vd, s, acc[i]);
        }
    }
    for (int i = 0; i < N; i++) out[i] = hsum256(acc[i]);
}

static void dot_q8_0_row_group(const uint8_t *row, int n, const float *const *x, int64_t nblocks, float *out) {
    switch (n) {
    case 4: q8_0_row_group(row, 4, x, nblocks, out); break;
    case 3: q8_0_row_group(row, 3, x, nblocks, out); break;
    case 2: q8_0_row_group(row, 2, x, nblocks, out); break;
    default: q8_0_row_group(row, 1, x, nblocks, out); break;
    }
}

// Batched decode: n independent activation rows against the same weight rows. The loop runs
// weight-row-outer, activation-inner, so each weight row is read from memory once for all n
// (it stays in L1 across them), and every (row, activation) dot is the very function the
// single-row kernels call: results are bitwise those of n separate gemv calls.
int akv_gemm_quant_rows(uint32_t ggml_type, const void *w, int64_t row_bytes, int64_t n, const float *x, int64_t ldx,
                        float *y, int64_t ldy, int64_t cols, int64_t row_begin, int64_t row_end) {
    if (cols % 32 != 0) return -1;
    const uint8_t *base = (const uint8_t *)w;
    const int64_t nb = cols / 32;
    for (int64_t r = row_begin; r < row_end; r++) {
        const uint8_t *row = base + r * row_bytes;
        if (ggml_type == 8) {
            for (int64_t i0 = 0; i0 < n; i0 += AKV_GROUP) {
                const int g = (int)(n - i0 < AKV_GROUP ? n - i0 : AKV_GROUP);
                const float *xs[AKV_GROUP];
                float out[AKV_GROUP];
                for (int i = 0; i < g; i++) xs[i] = x + (i0 + i) * ldx;
                dot_q8_0_row_group(row, g, xs, nb, out);
                for (int i = 0; i < g; i++) y[(i0 + i) * ldy + r] = out[i];
            }
            continue;
        }
        for (int64_t i = 0; i < n; i++) {
            const float *xi = x + i * ldx;
            switch (ggml_type) {
            case 3: y[i * ldy + r] = dot_q4_1_row(row, xi, nb); break;
            case 2: y[i * ldy + r] = dot_q4_0_row(row, xi, nb); break;
            case 8: y[i * ldy + r] = dot_q8_0_row(row, xi, nb); break;
            default: return -1;
            }
        }
    }
    return 0;
}

int akv_gemm_quant_q16_rows(uint32_t ggml_type, const void *w, int64_t row_bytes, int64_t n, const int16_t *xq,
                            const float *xd, const float *xsum, float *y, int64_t ldy, int64_t cols,
                            int64_t row_begin, int64_t row_end) {
    if (cols % 32 != 0) return -1;
    const uint8_t *base = (const uint8_t *)w;
    const int64_t nb = cols / 32;
    for (int64_t r = row_begin; r < row_end; r++) {
        const uint8_t *row = base + r * row_bytes;
        if (ggml_type == 3) {
            for (int64_t i0 = 0; i0 < n; i0 += AKV_GROUP) {
                const int g = (int)(n - i0 < AKV_GROUP ? n - i0 : AKV_GROUP);
                const int16_t *qs[AKV_GROUP];
                const float *ds[AKV_GROUP], *ss[AKV_GROUP];
                float out[AKV_GROUP];
                for (int i = 0; i < g; i++) { qs[i] = xq + (i0 + i) * cols; ds[i] = xd + (i0 + i) * nb; ss[i] = xsum + (i0 + i) * nb; }
                dot_q4_1_q16_group(row, g, qs, ds, ss, nb, out);
                for (int i = 0; i < g; i++) y[(i0 + i) * ldy + r] = out[i];
            }
            continue;
        }
        for (int64_t i = 0; i < n; i++) {
            const int16_t *q = xq + i * cols;
            const float *d = xd + i * nb, *s = xsum + i * nb;
            switch (ggml_type) {
            case 3: y[i * ldy + r] = dot_q4_1_q16(row, q, d, s, nb); break;
            case 2: y[i * ldy + r] = dot_q4_0_q16(row, q, d, s, nb); break;
            case 8: y[i * ldy + r] = dot_q8_0_q16(row, q, d, nb); break;
            default: return -1;
            }
        }
    }
    return 0;
}

