#include "akv_dequant.h"
