#include "akv_kernels.h"
