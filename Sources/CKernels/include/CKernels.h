// Umbrella header of the C numeric kernels.
#pragma once
#include "akv_kernels.h"
#include "akv_dequant.h"
#include "akv_pool.h"
#include "akv_gemm_bf16.h"
#include "akv_gemm_f32.h"
#include "akv_q4x8.h"
#include "akv_q4x8_i8.h"
