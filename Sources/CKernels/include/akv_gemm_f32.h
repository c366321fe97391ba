// fp32 products of a short block of rows (a question's first block, a few joiners' blocks) with
// row-major weights, without the packing a BLAS sgemm does on every call (for a dozen rows,
// packing the weights costs about as much as multiplying by them).
#pragma once
#include <stdint.h>

// c[r, f] = a[r, :] . w[f, :] (+ c[r, f] when accumulate) for every row r < rows and the output
// features f in [f0, f1); a [rows, k] (row stride lda), w [n, k] (row stride ldw), k % 8 == 0
// (returns -1 otherwise). Each element is the same sum, in the same order, whatever the rows,
// the feature range and its place in a tile, so a row's result does not depend on the others.
int akv_gemm_f32_rows(const float *a, int64_t rows, int64_t lda, int64_t k, const float *w, int64_t ldw,
                      int64_t f0, int64_t f1, float *c, int64_t ldc, int accumulate);
