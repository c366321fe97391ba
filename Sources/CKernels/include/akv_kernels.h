// Numeric kernels used by the forward pass. Plain C so they are always built optimized.
#pragma once
#include <stddef.h>
#include <stdint.h>

/// out[r,:] = x[r,:] / rms(x[r,:]) * w, for `rows` rows of length n.
void akv_rmsnorm_rows(const float *x, const float *w, float *out, int64_t rows, int64_t n, float eps);

/// cos/sin tables for rotate-half RoPE: table[r * half + i] = cos/sin(pos[r] * inv_freq[i]).
/// Angles are formed in double precision so large positions stay exact.
void akv_rope_table(const int32_t *pos, int64_t rows, const double *inv_freq, int64_t half,
                    float *cos_out, float *sin_out);

/// Rotate-half RoPE (Hugging Face layout: pairs (i, i + half) inside each head), in place.
/// x is [rows, heads * head_dim] with row stride `ld`; `sign` = +1 rotates, -1 un-rotates.
void akv_rope_apply(float *x, int64_t rows, int64_t ld, int64_t heads, int64_t head_dim,
                    const float *cos_t, const float *sin_t, float sign);

/// gate[i] = silu(gate[i]) * up[i]
void akv_silu_mul(float *gate, const float *up, int64_t n);

/// In-place softmax over the first n entries of x (entries at or after n are set to 0 up to `width`).
void akv_softmax_prefix(float *x, int64_t n, int64_t width);

/// y[r] = dot(W[r,:], x) for rows r in [row_begin, row_end) of a quantized [rows, cols] matrix.
/// W rows are contiguous ggml blocks (cols must be a multiple of 32). Supported: Q4_1 (3), Q8_0 (8),
/// Q4_0 (2). Returns -1 for other types.
int akv_gemv_quant(uint32_t ggml_type, const void *w, int64_t row_bytes, const float *x, float *y,
                   int64_t cols, int64_t row_begin, int64_t row_end);

/// Quantizes x (cols, a multiple of 32) to int16 blocks of 32 for the integer mat-vec below:
/// xq = round(x / d) with d = max|x| / 32767 per block; xd[b] = d; xsum[b] = d * sum(xq in block).
void akv_quantize_q16(const float *x, int64_t cols, int16_t *xq, float *xd, float *xsum);
/// The same to int8 blocks (the opt-in int8 decode path, akv_q4x8_i8.h): xq in [-127, 127] with
/// d = max|x| / 127 per block.
void akv_quantize_q8(const float *x, int64_t cols, int8_t *xq, float *xd, float *xsum);

/// Integer-dot variant of akv_gemv_quant on activations quantized by akv_quantize_q16:
/// about 2x fewer instructions per weight, same type support and return values.
int akv_gemv_quant_q16(uint32_t ggml_type, const void *w, int64_t row_bytes, const int16_t *xq, const float *xd,
                       const float *xsum, float *y, int64_t cols, int64_t row_begin, int64_t row_end);

/// y[r] = dot(W[r,:], x) for an fp32 row-major matrix (used where BLAS call overhead dominates).
/// Batched decode: y[i, r] = W[r] . x[i] for n activation rows (row stride ldx / ldy), W rows
/// [row_begin, row_end) read once for all n; each dot is bitwise akv_gemv_quant's.
int akv_gemm_quant_rows(uint32_t ggml_type, const void *w, int64_t row_bytes, int64_t n, const float *x, int64_t ldx,
                        float *y, int64_t ldy, int64_t cols, int64_t row_begin, int64_t row_end);
/// The same on activations quantized by akv_quantize_q16 (xq [n, cols], xd and xsum [n, cols/32]);
/// each dot is bitwise akv_gemv_quant_q16's.
int akv_gemm_quant_q16_rows(uint32_t ggml_type, const void *w, int64_t row_bytes, int64_t n, const int16_t *xq,
                            const float *xd, const float *xsum, float *y, int64_t ldy, int64_t cols,
                            int64_t row_begin, int64_t row_end);
void akv_gemv_f32_rows(const float *w, int64_t ld, const float *x, float *y, int64_t cols,
                       int64_t row_begin, int64_t row_end);

/// Attention for query rows [row_begin, row_end) of one head, written for short query blocks
/// (decode, SAC question tokens). q row r is at q + r*ldq; keys/values at k + j*ldkv, v + j*ldkv
/// (already offset to this head's KV group); row r sees keys [0, visible[r]).
/// scratch must hold max(visible) floats. out row r at out + r*ldo.
void akv_attention_head_rows(const float *q, int64_t ldq, const float *k, const float *v, int64_t ldkv,
                             float *out, int64_t ldo, int64_t head_dim, const int64_t *visible,
                             int64_t row_begin, int64_t row_end, float scale, float *scratch);
