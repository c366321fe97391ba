import COpenBLAS

/// Thin wrappers over OpenBLAS single-precision routines, row-major throughout.
public enum BLAS {
    /// OpenBLAS worker threads (the pthread build reads OPENBLAS_NUM_THREADS at load; this overrides it).
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }

    /// C[m, n] = alpha * A[m, k] * B[n, k]^T + beta * C  (B given as rows, like nn.Linear weights).
    @inline(__always)
    public static func gemmTransB(
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// C[m, n] = alpha * A[m, k] * B[k, n] + beta * C.
    @inline(__always)
    public static func gemm(
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
