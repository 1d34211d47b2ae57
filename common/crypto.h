/* crypto: the suite's one wrapper over mbedTLS for randomness, hashes, MACs, encodings and
 * ECDSA P-256. Every mbedTLS call outside TLS lives in crypto.c. */
#ifndef COMMON_CRYPTO_H
#define COMMON_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Seeds this process's CTR-DRBG from the OS entropy source. Call once at start and again in
 * every child after fork(). Returns 0 on success. Thread-safe afterwards. */
int crypto_init(void);
int crypto_random(void *buf, size_t len);

void crypto_sha256(const void *data, size_t len, uint8_t out[32]);
void crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                        uint8_t out[32]);
/* Incremental SHA-256 (a file hashed as it streams): new, update per piece, finish writes the
 * digest and frees the context (free alone drops an unfinished one; NULL is a no-op). */
typedef struct crypto_sha256_ctx crypto_sha256_ctx;
crypto_sha256_ctx *crypto_sha256_new(void);
void crypto_sha256_update(crypto_sha256_ctx *c, const void *data, size_t len);
void crypto_sha256_finish(crypto_sha256_ctx *c, uint8_t out[32]);
void crypto_sha256_free(crypto_sha256_ctx *c);
/* The SHA-256 of an open file read to its end, as hex, and the bytes read into *size: 0, or
 * -1 on a read error (errno says which). */
int crypto_sha256_file(FILE *f, char hex[65], uint64_t *size);

/* Constant-time comparison of two buffers of the same length: 1 if equal. */
int crypto_ct_equal(const void *a, const void *b, size_t len);

/* base64url without padding. encode returns the length written (out needs
 * crypto_b64url_len(len) + 1 bytes, NUL-terminated). decode is strict (rejects padding,
 * characters outside the alphabet, non-zero trailing bits): returns 0 and sets *outlen. */
size_t crypto_b64url_len(size_t len);
size_t crypto_b64url_encode(const void *in, size_t len, char *out);
int crypto_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *outlen);

/* Lowercase hex; out needs 2*len+1 bytes. decode returns 0 on success (exactly 2*outlen chars). */
void crypto_hex(const void *in, size_t len, char *out);
int crypto_unhex(const char *in, size_t inlen, uint8_t *out, size_t outlen);
/* The value of one hex digit (either case), -1 for any other byte. */
int crypto_hex_value(unsigned char c);

/* nbytes of randomness as base64url text (out needs crypto_b64url_len(nbytes)+1). */
int crypto_random_token(char *out, size_t nbytes);

/* ECDSA P-256 (ES256). A key is loaded from PEM (SEC1 "EC PRIVATE KEY" or PKCS#8 private,
 * or a public "PUBLIC KEY"), or from the raw JWK coordinates. */
typedef struct crypto_ec_key crypto_ec_key;
crypto_ec_key *crypto_ec_key_from_pem(const char *pem, size_t len); /* NULL on error */
crypto_ec_key *crypto_ec_key_from_xy(const uint8_t x[32], const uint8_t y[32]);
void crypto_ec_key_free(crypto_ec_key *key);
int crypto_ec_key_is_private(const crypto_ec_key *key);
int crypto_ec_key_xy(const crypto_ec_key *key, uint8_t x[32], uint8_t y[32]);
/* Signs the SHA-256 of data; sig is JWS form r||s (64 bytes). Returns 0 on success. */
int crypto_ec_sign(const crypto_ec_key *key, const void *data, size_t len, uint8_t sig[64]);
/* 1 when sig (r||s) is a valid signature of SHA-256(data), 0 otherwise. */
int crypto_ec_verify(const crypto_ec_key *key, const void *data, size_t len, const uint8_t sig[64]);

#endif
