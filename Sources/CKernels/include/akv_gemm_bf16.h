// BF16 matrix products for prefill on CPUs with AVX512_BF16 (vdpbf16ps: two bf16 products
// summed into each fp32 lane), chosen at run time; elsewhere the fp32 sgemm path is used.
#pragma once
#include <stdint.h>

// 1 when the CPU (and the OS, for the zmm state) supports AVX512F and AVX512_BF16.
int akv_bf16_supported(void);

// Bytes of W [n, k] (fp32, row per output feature) packed for akv_gemm_bf16: 32-column blocks,
// each k/2 pairs x 32 columns x 2 bf16 (k must be even). Columns past n are zero.
int64_t akv_bf16_packed_bytes(int64_t n, int64_t k);
void akv_bf16_pack(const float *w, int64_t n, int64_t k, uint16_t *packed);

// x [rows, k] fp32 -> bf16, round to nearest even (k even; the layout the kernel reads).
void akv_bf16_convert(const float *x, int64_t count, uint16_t *out);

// c[rows, n0:n1] (row stride ldc) = a[rows, k] (bf16) x packed^T for the 32-column blocks
// [block0, block1) of `packed` (n columns in all), + c when accumulate. Each element's sum runs
// over k in order whatever the rows and blocks, so a row's result does not depend on the
// other rows of the call. Returns 0 when the CPU lacks AVX512_BF16.
int akv_gemm_bf16(const uint16_t *a, int64_t rows, int64_t k, const uint16_t *packed, int64_t n,
                  int64_t block0, int64_t block1, float *c, int64_t ldc, int accumulate);
