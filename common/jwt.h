/* jwt: ES256 JSON Web Tokens (RFC 7515/7519) for the suite's access and service tokens.
 *
 * A key set holds P-256 keys, each named by its kid = the RFC 7638 thumbprint of the public
 * JWK. The last private key added signs; every key verifies and is listed in the JWKS.
 * Verification pins ES256 (no "none", no HS256, no other algorithm), needs a known kid, a
 * strict base64url encoding, the expected "typ" header, and checks iss, aud, exp (and nbf)
 * with a small leeway.
 *
 * Threads: jwt_sign, jwt_decode and jwt_verify only read the key set, so several threadpool
 * threads may sign and verify with one set at once (crypto.c makes ECDSA with a shared key
 * safe), as long as no key is added meanwhile; the claims they are given or return belong
 * to the calling thread (jansson objects are not shared between threads).
 * Verified claims are cached in a ttl_cache (ttl_cache.h). */
#ifndef COMMON_JWT_H
#define COMMON_JWT_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define JWT_MAX_LEN 8192 /* longer tokens are refused before any decoding */
#define JWT_KID_LEN 43   /* base64url of a SHA-256 */
#define JWT_KID_MAX 128  /* longest kid accepted from a JWKS */

typedef struct jwt_keyset jwt_keyset;

jwt_keyset *jwt_keyset_new(void);
void jwt_keyset_free(jwt_keyset *ks);
/* Adds a key from PEM (private or public). Returns 0, or -1 when it is not a P-256 key. */
int jwt_keyset_add_pem(jwt_keyset *ks, const char *pem, size_t len);
/* Adds every key of a file (a PEM). Returns 0 or -1. */
int jwt_keyset_add_pem_file(jwt_keyset *ks, const char *path);
/* Adds the EC P-256 keys of a JWKS document ({"keys":[...]}); keys of another type are
 * skipped. Returns the number of keys added, or -1 when the document is malformed. */
int jwt_keyset_add_jwks(jwt_keyset *ks, const char *json, size_t len);
size_t jwt_keyset_count(const jwt_keyset *ks);
int jwt_keyset_has_kid(const jwt_keyset *ks, const char *kid);
/* kid of the signing key, NULL when no private key was added. */
const char *jwt_keyset_signing_kid(const jwt_keyset *ks);
/* {"keys":[{"kty":"EC","crv":"P-256","x","y","kid","use":"sig","alg":"ES256"}...]}; new ref. */
json_t *jwt_keyset_jwks(const jwt_keyset *ks);

/* The RFC 7638 thumbprint of a P-256 public key, base64url (out: JWT_KID_LEN + 1 bytes). */
void jwt_thumbprint(const uint8_t x[32], const uint8_t y[32], char out[JWT_KID_LEN + 1]);

/* Signs claims (borrowed) with header {"alg":"ES256","typ":typ,"kid":...}. Returns a malloc'd
 * token, NULL when the set has no private key or signing failed. */
char *jwt_sign(const jwt_keyset *ks, const char *typ, json_t *claims);

typedef enum {
    JWT_OK = 0,
    JWT_EMALFORMED, /* not three base64url parts of JSON objects, too long, bad claims */
    JWT_EALG,       /* alg is not ES256 (none, HS256 ...) or crit is present */
    JWT_EKID,       /* kid missing or unknown */
    JWT_ETYP,       /* typ header is not the expected one */
    JWT_ESIG,       /* the signature does not verify */
    JWT_EEXPIRED,   /* exp in the past (beyond the leeway) */
    JWT_ENOTYET,    /* nbf or iat in the future (beyond the leeway) */
    JWT_EISS,       /* iss is not the expected issuer */
    JWT_EAUD,       /* aud does not name the expected audience */
} jwt_err;

const char *jwt_strerror(jwt_err e);

typedef struct jwt_expect {
    const char *typ; /* required typ header ("at+jwt", "svc"); NULL: not checked */
    const char *iss; /* required issuer; NULL: not checked */
    const char *aud; /* required audience (aud string or array member); NULL: not checked */
    int64_t now;     /* unix seconds */
    int64_t leeway;  /* seconds of clock skew tolerated on exp/nbf/iat */
} jwt_expect;

/* Parses the token and checks everything but the signature (cheap). On JWT_OK *claims is a
 * new reference (claims may be NULL when not wanted). */
jwt_err jwt_decode(const jwt_keyset *ks, const char *token, size_t len, const jwt_expect *ex,
                   json_t **claims);
/* jwt_decode plus the ES256 signature check. On JWT_OK *claims is a new reference. */
jwt_err jwt_verify(const jwt_keyset *ks, const char *token, size_t len, const jwt_expect *ex,
                   json_t **claims);
/* Checks only the time claims of already verified claims (for cached tokens). */
jwt_err jwt_check_time(json_t *claims, const jwt_expect *ex);

#endif
