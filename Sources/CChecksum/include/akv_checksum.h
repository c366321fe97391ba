#ifndef AKV_CHECKSUM_H
#define AKV_CHECKSUM_H
#include <stddef.h>
#include <stdint.h>

/* Streaming SHA-256 (FIPS 180-4): content hashes and model/adapter fingerprints. */
typedef struct {
    uint32_t state[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t used;
} akv_sha256_ctx;

void akv_sha256_init(akv_sha256_ctx *ctx);
void akv_sha256_update(akv_sha256_ctx *ctx, const void *data, size_t len);
void akv_sha256_final(akv_sha256_ctx *ctx, uint8_t out[32]);

/* CRC32C (Castagnoli), hardware SSE4.2 when the CPU has it, else a table.
   Chainable: pass the previous result as crc (0 to start). */
uint32_t akv_crc32c(uint32_t crc, const void *data, size_t len);

#endif
