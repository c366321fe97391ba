#ifndef ANCHORKV_FUZZ_DRIVER_H
#define ANCHORKV_FUZZ_DRIVER_H
#include <stddef.h>
#include <stdint.h>

typedef int (*akv_fuzz_callback)(const uint8_t *data, size_t size);

/// 1 when libFuzzer is linked in (the fuzzing build, tools/fuzz/run.sh), else 0.
int akv_fuzzer_linked(void);

/// Hands control to libFuzzer (LLVMFuzzerRunDriver) with the program's arguments; returns its
/// exit code, or -1 when libFuzzer is not linked in.
int akv_fuzzer_run(int *argc, char ***argv, akv_fuzz_callback callback);

#endif
