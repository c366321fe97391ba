// Q4_1 decode products on int8 activations (llama.cpp's Q4_1 x Q8_1 arithmetic), 8 weight rows
// interleaved. One block of 8 rows x 32 columns is 160 bytes, as in akv_q4x8.h: the 8 rows' f16
// scales, their f16 mins, then 4 x 32 bytes of nibbles, laid out for unsigned x signed byte
// products: byte lane 4r+e of word j holds row r's column 8j+e (low nibble) and 8j+4+e (high
// nibble). One mask (or a shift and a mask) gives a vector of 8 rows x 4 columns, multiplied
// against one broadcast group of 4 activations: vpdpbusd where the CPU has AVX512_VNNI,
// vpmaddubsw elsewhere (its int16 sums stay exact over a block: |15 * 127 * 2 * 8| < 32768,
// then one vpmaddwd per block). Twice the multiply-adds per instruction of the int16 kernels.
#pragma once
#include <stdint.h>

// Activations: akv_quantize_q8 (akv_kernels.h).

/// Bytes of a [rows, cols] Q4_1 matrix interleaved for int8 activations (rows % 8, cols % 32 == 0).
int64_t akv_q4x8_i8_packed_bytes(int64_t rows, int64_t cols);
/// Interleaves ggml Q4_1 rows (row stride row_bytes). Returns -1 on a shape it cannot take.
int akv_q4x8_i8_pack(const void *q4_1, int64_t row_bytes, int64_t rows, int64_t cols, void *packed);
/// y[i, r] = W[r, :] . x[i, :] for the n activation rows (xq [n, cols], xd and xsum [n, cols/32]),
/// for the rows of 8-row groups [group_begin, group_end). Each activation's result depends on
/// its row alone (not on n or its place in the batch), and is the same with use_vnni 0 or 1.
int akv_gemm_q4x8_q8(const void *packed, int64_t n, const int8_t *xq, const float *xd, const float *xsum,
                     float *y, int64_t ldy, int64_t cols, int64_t group_begin, int64_t group_end, int use_vnni);
