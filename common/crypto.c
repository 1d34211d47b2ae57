/* crypto: the suite's one wrapper over mbedTLS 2.28 outside TLS: a per-process CTR-DRBG
 * (re-seeded after fork), SHA-256, HMAC-SHA256, constant-time compare, base64url, hex and
 * ECDSA P-256 with JWS-style raw r||s signatures. */
#include "crypto.h"

#include "xalloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/bignum.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

/* ---- random ---- */

static pthread_mutex_t crypto_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;
static mbedtls_entropy_context crypto_entropy;
static mbedtls_ctr_drbg_context crypto_drbg;
static int crypto_seeded; /* by this process: a child of fork() starts unseeded */
static int crypto_inited; /* the DRBG and entropy hold a state (maybe the parent's) */

/* fork() while another thread holds crypto_lock would leave it locked in the child: hold it
 * across fork so that it is free on both sides. */
static void crypto_atfork_prepare(void)
{
    pthread_mutex_lock(&crypto_lock);
}

static void crypto_atfork_release(void)
{
    pthread_mutex_unlock(&crypto_lock);
}

/* The child never shares its parent's stream: it seeds its own on its first draw. (Told by
 * fork() itself rather than by comparing getpid() on every draw, a system call each.) */
static void crypto_atfork_child(void)
{
    crypto_seeded = 0;
    pthread_mutex_unlock(&crypto_lock);
}

static void crypto_register_atfork(void)
{
    pthread_atfork(crypto_atfork_prepare, crypto_atfork_release, crypto_atfork_child);
}

/* (Re-)creates the DRBG with fresh entropy and the pid as personalization. Lock held. */
static int crypto_seed_locked(void)
{
    if (crypto_inited) {
        mbedtls_ctr_drbg_free(&crypto_drbg);
        mbedtls_entropy_free(&crypto_entropy);
        crypto_seeded = 0;
    }
    mbedtls_entropy_init(&crypto_entropy);
    mbedtls_ctr_drbg_init(&crypto_drbg);
    crypto_inited = 1;

    struct {
        char tag[8];
        pid_t pid;
        struct timespec ts;
    } pers;
    memset(&pers, 0, sizeof pers);
    memcpy(pers.tag, "suite", 5);
    pers.pid = getpid();
    clock_gettime(CLOCK_MONOTONIC, &pers.ts);
    if (mbedtls_ctr_drbg_seed(&crypto_drbg, mbedtls_entropy_func, &crypto_entropy,
                              (const unsigned char *)&pers, sizeof pers) != 0) {
        mbedtls_ctr_drbg_free(&crypto_drbg);
        mbedtls_entropy_free(&crypto_entropy);
        crypto_inited = 0;
        return -1;
    }
    crypto_seeded = 1;
    return 0;
}

int crypto_init(void)
{
    pthread_once(&crypto_once, crypto_register_atfork);
    pthread_mutex_lock(&crypto_lock);
    int rc = crypto_seed_locked();
    pthread_mutex_unlock(&crypto_lock);
    return rc;
}

int crypto_random(void *buf, size_t len)
{
    pthread_once(&crypto_once, crypto_register_atfork);
    pthread_mutex_lock(&crypto_lock);
    int rc = 0;
    /* Not seeded yet, or seeded by a parent process: seed now, never share its stream. */
    if (!crypto_seeded)
        rc = crypto_seed_locked();
    unsigned char *p = buf;
    while (rc == 0 && len > 0) {
        size_t n = len < MBEDTLS_CTR_DRBG_MAX_REQUEST ? len : MBEDTLS_CTR_DRBG_MAX_REQUEST;
        if (mbedtls_ctr_drbg_random(&crypto_drbg, p, n) != 0)
            rc = -1;
        p += n;
        len -= n;
    }
    pthread_mutex_unlock(&crypto_lock);
    return rc;
}

/* The mbedTLS f_rng shape over crypto_random. */
static int crypto_rng(void *ctx, unsigned char *buf, size_t len)
{
    (void)ctx;
    return crypto_random(buf, len) == 0 ? 0 : MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
}

int crypto_random_token(char *out, size_t nbytes)
{
    uint8_t small[64];
    uint8_t *buf = nbytes <= sizeof small ? small : xmalloc(nbytes);
    int rc = crypto_random(buf, nbytes);
    if (rc == 0)
        crypto_b64url_encode(buf, nbytes, out);
    memset(buf, 0, nbytes);
    if (buf != small)
        free(buf);
    return rc;
}

/* ---- hashes ---- */

void crypto_sha256(const void *data, size_t len, uint8_t out[32])
{
    mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), data, len, out);
}

struct crypto_sha256_ctx {
    mbedtls_sha256_context sha;
};

crypto_sha256_ctx *crypto_sha256_new(void)
{
    crypto_sha256_ctx *c = xmalloc(sizeof *c);
    mbedtls_sha256_init(&c->sha);
    mbedtls_sha256_starts_ret(&c->sha, 0);
    return c;
}

void crypto_sha256_update(crypto_sha256_ctx *c, const void *data, size_t len)
{
    mbedtls_sha256_update_ret(&c->sha, data, len);
}

void crypto_sha256_finish(crypto_sha256_ctx *c, uint8_t out[32])
{
    mbedtls_sha256_finish_ret(&c->sha, out);
    crypto_sha256_free(c);
}

void crypto_sha256_free(crypto_sha256_ctx *c)
{
    if (!c)
        return;
    mbedtls_sha256_free(&c->sha);
    free(c);
}

int crypto_sha256_file(FILE *f, char hex[65], uint64_t *size)
{
    enum { CHUNK = 65536 };
    crypto_sha256_ctx *h = crypto_sha256_new();
    char *buf = xmalloc(CHUNK);
    uint64_t total = 0;
    size_t n;
    while ((n = fread(buf, 1, CHUNK, f)) > 0) {
        crypto_sha256_update(h, buf, n);
        total += n;
    }
    free(buf);
    if (ferror(f)) {
        crypto_sha256_free(h);
        return -1;
    }
    uint8_t digest[32];
    crypto_sha256_finish(h, digest);
    crypto_hex(digest, sizeof digest, hex);
    *size = total;
    return 0;
}

void crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                        uint8_t out[32])
{
    mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), key, keylen, data, len, out);
}

int crypto_ct_equal(const void *a, const void *b, size_t len)
{
    const volatile unsigned char *x = a, *y = b;
    unsigned char diff = 0;
    for (size_t i = 0; i < len; i++)
        diff |= x[i] ^ y[i];
    return diff == 0;
}

/* ---- encodings ---- */

static const char crypto_b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t crypto_b64url_len(size_t len)
{
    static const size_t tail[3] = {0, 2, 3};
    return len / 3 * 4 + tail[len % 3];
}

size_t crypto_b64url_encode(const void *in, size_t len, char *out)
{
    const uint8_t *p = in;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = crypto_b64_alphabet[v >> 18];
        out[o++] = crypto_b64_alphabet[(v >> 12) & 63];
        out[o++] = crypto_b64_alphabet[(v >> 6) & 63];
        out[o++] = crypto_b64_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = crypto_b64_alphabet[v >> 18];
        out[o++] = crypto_b64_alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = crypto_b64_alphabet[v >> 18];
        out[o++] = crypto_b64_alphabet[(v >> 12) & 63];
        out[o++] = crypto_b64_alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

/* The 6-bit value of a base64url character, -1 outside the alphabet. */
static int crypto_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int crypto_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *outlen)
{
    if (len % 4 == 1)
        return -1;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > cap)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = crypto_b64_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return -1; /* non-zero trailing bits: not the canonical encoding */
    *outlen = o;
    return 0;
}

void crypto_hex(const void *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = in;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * len] = '\0';
}

int crypto_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int crypto_unhex(const char *in, size_t inlen, uint8_t *out, size_t outlen)
{
    if (inlen != 2 * outlen)
        return -1;
    for (size_t i = 0; i < outlen; i++) {
        int hi = crypto_hex_value((unsigned char)in[2 * i]);
        int lo = crypto_hex_value((unsigned char)in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* ---- ECDSA P-256 ---- */

struct crypto_ec_key {
    mbedtls_ecp_keypair kp; /* grp P-256, Q always set, d set for a private key */
    int is_private;
};

/* Checks the key and warms the group's precomputed table for the generator. mbedTLS 2.28
 * stores that table in the group on first use (ecp_mul_comb), which would be a data race
 * when two threadpool threads sign or verify with one key; after this it is only read. */
static int crypto_ec_key_finish(crypto_ec_key *key)
{
    mbedtls_ecp_keypair *kp = &key->kp;
    if (kp->grp.id != MBEDTLS_ECP_DP_SECP256R1)
        return -1;
    if (mbedtls_ecp_check_pubkey(&kp->grp, &kp->Q) != 0)
        return -1;
    if (key->is_private && mbedtls_ecp_check_privkey(&kp->grp, &kp->d) != 0)
        return -1;
    mbedtls_ecp_point r;
    mbedtls_mpi one;
    mbedtls_ecp_point_init(&r);
    mbedtls_mpi_init(&one);
    int rc = mbedtls_mpi_lset(&one, 1);
    if (rc == 0)
        rc = mbedtls_ecp_mul(&kp->grp, &r, &one, &kp->grp.G, crypto_rng, NULL);
    mbedtls_ecp_point_free(&r);
    mbedtls_mpi_free(&one);
    return rc == 0 ? 0 : -1;
}

static crypto_ec_key *crypto_ec_key_alloc(void)
{
    crypto_ec_key *key = xcalloc(1, sizeof *key);
    mbedtls_ecp_keypair_init(&key->kp);
    return key;
}

crypto_ec_key *crypto_ec_key_from_pem(const char *pem, size_t len)
{
    /* mbedTLS wants PEM NUL-terminated with the NUL counted in the length. */
    while (len > 0 && pem[len - 1] == '\0')
        len--;
    if (len == 0)
        return NULL;
    unsigned char *buf = xmalloc(len + 1);
    memcpy(buf, pem, len);
    buf[len] = '\0';

    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    int is_private = 1;
    int rc = mbedtls_pk_parse_key(&pk, buf, len + 1, NULL, 0);
    if (rc != 0) {
        mbedtls_pk_free(&pk);
        mbedtls_pk_init(&pk);
        is_private = 0;
        rc = mbedtls_pk_parse_public_key(&pk, buf, len + 1);
    }
    free(buf);
    crypto_ec_key *key = NULL;
    if (rc == 0 && mbedtls_pk_get_type(&pk) == MBEDTLS_PK_ECKEY) {
        key = crypto_ec_key_alloc();
        if (key) {
            key->is_private = is_private;
            const mbedtls_ecp_keypair *src = mbedtls_pk_ec(pk);
            if (mbedtls_ecp_group_load(&key->kp.grp, src->grp.id) != 0 ||
                mbedtls_ecp_copy(&key->kp.Q, &src->Q) != 0 ||
                (is_private && mbedtls_mpi_copy(&key->kp.d, &src->d) != 0) ||
                crypto_ec_key_finish(key) != 0) {
                crypto_ec_key_free(key);
                key = NULL;
            }
        }
    }
    mbedtls_pk_free(&pk);
    return key;
}

crypto_ec_key *crypto_ec_key_from_xy(const uint8_t x[32], const uint8_t y[32])
{
    crypto_ec_key *key = crypto_ec_key_alloc();
    if (!key)
        return NULL;
    mbedtls_ecp_keypair *kp = &key->kp;
    if (mbedtls_ecp_group_load(&kp->grp, MBEDTLS_ECP_DP_SECP256R1) != 0 ||
        mbedtls_mpi_read_binary(&kp->Q.X, x, 32) != 0 ||
        mbedtls_mpi_read_binary(&kp->Q.Y, y, 32) != 0 || mbedtls_mpi_lset(&kp->Q.Z, 1) != 0 ||
        crypto_ec_key_finish(key) != 0) {
        crypto_ec_key_free(key);
        return NULL;
    }
    return key;
}

void crypto_ec_key_free(crypto_ec_key *key)
{
    if (!key)
        return;
    mbedtls_ecp_keypair_free(&key->kp);
    free(key);
}

int crypto_ec_key_is_private(const crypto_ec_key *key)
{
    return key && key->is_private;
}

int crypto_ec_key_xy(const crypto_ec_key *key, uint8_t x[32], uint8_t y[32])
{
    if (mbedtls_mpi_write_binary(&key->kp.Q.X, x, 32) != 0 ||
        mbedtls_mpi_write_binary(&key->kp.Q.Y, y, 32) != 0)
        return -1;
    return 0;
}

int crypto_ec_sign(const crypto_ec_key *key, const void *data, size_t len, uint8_t sig[64])
{
    if (!key || !key->is_private)
        return -1;
    uint8_t hash[32];
    crypto_sha256(data, len, hash);
    mbedtls_mpi r, s;
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    /* mbedTLS takes the group non-const; the only state it writes is warmed at load. */
    mbedtls_ecp_group *grp = (mbedtls_ecp_group *)&key->kp.grp;
    int rc = mbedtls_ecdsa_sign_det_ext(grp, &r, &s, &key->kp.d, hash, sizeof hash,
                                        MBEDTLS_MD_SHA256, crypto_rng, NULL);
    if (rc == 0)
        rc = mbedtls_mpi_write_binary(&r, sig, 32);
    if (rc == 0)
        rc = mbedtls_mpi_write_binary(&s, sig + 32, 32);
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    return rc == 0 ? 0 : -1;
}

int crypto_ec_verify(const crypto_ec_key *key, const void *data, size_t len, const uint8_t sig[64])
{
    if (!key)
        return 0;
    mbedtls_ecp_group *grp = (mbedtls_ecp_group *)&key->kp.grp;
    mbedtls_mpi r, s;
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    int ok = 0;
    if (mbedtls_mpi_read_binary(&r, sig, 32) == 0 &&
        mbedtls_mpi_read_binary(&s, sig + 32, 32) == 0 && mbedtls_mpi_cmp_int(&r, 1) >= 0 &&
        mbedtls_mpi_cmp_mpi(&r, &grp->N) < 0 && mbedtls_mpi_cmp_int(&s, 1) >= 0 &&
        mbedtls_mpi_cmp_mpi(&s, &grp->N) < 0) {
        uint8_t hash[32];
        crypto_sha256(data, len, hash);
        ok = mbedtls_ecdsa_verify(grp, hash, sizeof hash, &key->kp.Q, &r, &s) == 0;
    }
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    return ok;
}
