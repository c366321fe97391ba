// Decode products over Q4_1 (and Q8_0) weights interleaved 8 rows at a time, on int16 activations
// (akv_quantize_q16). One block of 8 rows x 32 columns is 160 bytes: the 8 rows' f16 scales,
// their f16 mins, then 4 x 32 bytes of nibbles laid out so that four shifts and masks give 16
// vectors of int16 pairs (lane 2r+e = row r, column 2p+e), each multiplied against one
// broadcast activation pair (vpdpwssd where the CPU has AVX512_VNNI, vpmaddwd + vpaddd
// elsewhere: the same exact integers). The float work (scale, min) then runs once per 8 rows
// instead of once per row, and the unpacked block serves up to 4 activation rows.
#pragma once
#include <stdint.h>

/// 1 when the CPU has AVX512_VNNI with AVX512VL (vpdpwssd on 256-bit vectors), else 0.
int akv_q4x8_vnni_supported(void);
/// Bytes of a [rows, cols] Q4_1 matrix interleaved; rows % 8 == 0 and cols % 32 == 0.
int64_t akv_q4x8_packed_bytes(int64_t rows, int64_t cols);
/// Interleaves ggml Q4_1 rows (row stride row_bytes). Returns -1 on a shape it cannot take.
int akv_q4x8_pack(const void *q4_1, int64_t row_bytes, int64_t rows, int64_t cols, void *packed);
/// y[i, r] = W[r, :] . x[i, :] for the n activation rows (xq [n, cols], xd and xsum [n, cols/32]),
/// for the rows of 8-row groups [group_begin, group_end). Each activation's result depends on
/// its row alone (not on n or its place in the batch), and is the same with use_vnni 0 or 1.
int akv_gemm_q4x8_q16(const void *packed, int64_t n, const int16_t *xq, const float *xd, const float *xsum,
                      float *y, int64_t ldy, int64_t cols, int64_t group_begin, int64_t group_end, int use_vnni);

/// The same for Q8_0 (the LM head of the Q4_1 files): 272 bytes a block, the 8 rows' f16 scales
/// then 16 x 16 int8 pair vectors; no min term, so no xsum.
int64_t akv_q8x8_packed_bytes(int64_t rows, int64_t cols);
int akv_q8x8_pack(const void *q8_0, int64_t row_bytes, int64_t rows, int64_t cols, void *packed);
int akv_gemm_q8x8_q16(const void *packed, int64_t n, const int16_t *xq, const float *xd,
                      float *y, int64_t ldy, int64_t cols, int64_t group_begin, int64_t group_end, int use_vnni);
