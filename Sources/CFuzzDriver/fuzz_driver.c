#include "fuzz_driver.h"

// libFuzzer's entry for programs that keep their own main (libclang_rt.fuzzer_no_main). Weak:
// ordinary builds do not link libFuzzer, the symbol stays null and anchorkv-fuzz only replays.
__attribute__((weak)) int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*cb)(const uint8_t *, size_t));

int akv_fuzzer_linked(void) { return LLVMFuzzerRunDriver != 0; }

int akv_fuzzer_run(int *argc, char ***argv, akv_fuzz_callback callback) {
    if (!LLVMFuzzerRunDriver) return -1;
    return LLVMFuzzerRunDriver(argc, argv, callback);
}
