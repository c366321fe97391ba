// Storage formats: ggml block quantization, fp16 and bf16.
// Type ids are ggml's (GGUF tensor types), so GGUF tensors need no translation.
#pragma once
#include <stddef.h>
#include <stdint.h>

enum {
    AKV_F32 = 0, AKV_F16 = 1, AKV_Q4_0 = 2, AKV_Q4_1 = 3, AKV_Q5_0 = 6, AKV_Q5_1 = 7,
    AKV_Q8_0 = 8, AKV_Q4_K = 12, AKV_Q5_K = 13, AKV_Q6_K = 14, AKV_BF16 = 30,
};

/// 1 when akv_dequantize handles the type, else 0.
int akv_type_supported(uint32_t type);
/// Elements per block (1 for plain types), 0 for unknown types.
int64_t akv_type_block_elems(uint32_t type);
/// Bytes per block, 0 for unknown types.
int64_t akv_type_block_bytes(uint32_t type);

/// Decodes n elements (a multiple of the block size) of `type` from src into dst.
/// Returns 0, or -1 for an unsupported type or a ragged n (nothing written then).
int akv_dequantize(uint32_t type, const void *src, float *dst, int64_t n);

float akv_f16_to_f32(uint16_t h);
uint16_t akv_f32_to_f16(float f);            // round to nearest even
float akv_bf16_to_f32(uint16_t h);
uint16_t akv_f32_to_bf16(float f);           // round to nearest even, NaN kept NaN
void akv_f16_to_f32_n(const uint16_t *src, float *dst, int64_t n);
void akv_f32_to_f16_n(const float *src, uint16_t *dst, int64_t n);
void akv_bf16_to_f32_n(const uint16_t *src, float *dst, int64_t n);
void akv_f32_to_bf16_n(const float *src, uint16_t *dst, int64_t n);
