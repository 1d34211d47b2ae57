/* jwt: ES256 JWT signing and strict verification over crypto.h, the key set with RFC 7638
 * kids and its JWKS, and the bounded expiring cache of verified tokens / answers. */
#include "jwt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "xalloc.h"

#define JWT_MAX_HEADER 1024
#define JWT_MAX_KEYS   16

typedef struct jwt_key {
    crypto_ec_key *key;
    uint8_t x[32], y[32];
    char kid[JWT_KID_MAX + 1];
    int is_private;
} jwt_key;

struct jwt_keyset {
    jwt_key keys[JWT_MAX_KEYS];
    size_t n;
    int signer; /* index of the signing key, -1 when none */
};

jwt_keyset *jwt_keyset_new(void)
{
    jwt_keyset *ks = xcalloc(1, sizeof(*ks));
    if (ks)
        ks->signer = -1;
    return ks;
}

void jwt_keyset_free(jwt_keyset *ks)
{
    if (!ks)
        return;
    for (size_t i = 0; i < ks->n; i++)
        crypto_ec_key_free(ks->keys[i].key);
    free(ks);
}

void jwt_thumbprint(const uint8_t x[32], const uint8_t y[32], char out[JWT_KID_LEN + 1])
{
    /* RFC 7638: the required members in lexicographic order, no whitespace. */
    char bx[48], by[48], canon[160];
    uint8_t digest[32];
    crypto_b64url_encode(x, 32, bx);
    crypto_b64url_encode(y, 32, by);
    int n = snprintf(canon, sizeof(canon),
                     "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", bx, by);
    crypto_sha256(canon, (size_t)n, digest);
    crypto_b64url_encode(digest, 32, out);
}

static const jwt_key *jwt_find(const jwt_keyset *ks, const char *kid)
{
    for (size_t i = 0; i < ks->n; i++)
        if (strcmp(ks->keys[i].kid, kid) == 0)
            return &ks->keys[i];
    return NULL;
}

/* Takes ownership of key. kid NULL: the thumbprint. */
static int jwt_keyset_add_key(jwt_keyset *ks, crypto_ec_key *key, const char *kid)
{
    jwt_key k;
    memset(&k, 0, sizeof(k));
    if (ks->n == JWT_MAX_KEYS || crypto_ec_key_xy(key, k.x, k.y) != 0) {
        crypto_ec_key_free(key);
        return -1;
    }
    if (kid)
        snprintf(k.kid, sizeof(k.kid), "%s", kid);
    else
        jwt_thumbprint(k.x, k.y, k.kid);
    if (jwt_find(ks, k.kid)) { /* the same key twice: keep the first */
        crypto_ec_key_free(key);
        return 0;
    }
    k.key = key;
    k.is_private = crypto_ec_key_is_private(key);
    ks->keys[ks->n] = k;
    if (k.is_private)
        ks->signer = (int)ks->n;
    ks->n++;
    return 0;
}

int jwt_keyset_add_pem(jwt_keyset *ks, const char *pem, size_t len)
{
    crypto_ec_key *key = crypto_ec_key_from_pem(pem, len);
    if (!key)
        return -1;
    return jwt_keyset_add_key(ks, key, NULL);
}

int jwt_keyset_add_pem_file(jwt_keyset *ks, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    char buf[16384];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    int toolong = !feof(f);
    fclose(f);
    if (toolong || n == 0)
        return -1;
    buf[n] = '\0';
    return jwt_keyset_add_pem(ks, buf, n);
}

static int jwt_b64_coord(json_t *v, uint8_t out[32])
{
    size_t n;
    if (!json_is_string(v))
        return -1;
    if (crypto_b64url_decode(json_string_value(v), json_string_length(v), out, 32, &n) != 0 ||
        n != 32)
        return -1;
    return 0;
}

int jwt_keyset_add_jwks(jwt_keyset *ks, const char *json, size_t len)
{
    json_error_t jerr;
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *keys = doc ? json_object_get(doc, "keys") : NULL;
    if (!json_is_array(keys)) {
        json_decref(doc);
        return -1;
    }
    int added = 0;
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        uint8_t x[32], y[32];
        const char *kty = json_string_value(json_object_get(k, "kty"));
        const char *crv = json_string_value(json_object_get(k, "crv"));
        const char *kid = json_string_value(json_object_get(k, "kid"));
        if (!kty || !crv || strcmp(kty, "EC") != 0 || strcmp(crv, "P-256") != 0)
            continue;
        if (jwt_b64_coord(json_object_get(k, "x"), x) || jwt_b64_coord(json_object_get(k, "y"), y))
            continue;
        if (kid && (strlen(kid) == 0 || strlen(kid) > JWT_KID_MAX))
            continue;
        crypto_ec_key *key = crypto_ec_key_from_xy(x, y);
        if (!key)
            continue;
        size_t before = ks->n;
        if (jwt_keyset_add_key(ks, key, kid) == 0 && ks->n > before)
            added++;
    }
    json_decref(doc);
    return added;
}

size_t jwt_keyset_count(const jwt_keyset *ks)
{
    return ks->n;
}

int jwt_keyset_has_kid(const jwt_keyset *ks, const char *kid)
{
    return jwt_find(ks, kid) != NULL;
}

const char *jwt_keyset_signing_kid(const jwt_keyset *ks)
{
    return ks->signer < 0 ? NULL : ks->keys[ks->signer].kid;
}

json_t *jwt_keyset_jwks(const jwt_keyset *ks)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < ks->n; i++) {
        char bx[48], by[48];
        crypto_b64url_encode(ks->keys[i].x, 32, bx);
        crypto_b64url_encode(ks->keys[i].y, 32, by);
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "kty", "EC", "crv",
                                             "P-256", "x", bx, "y", by, "kid", ks->keys[i].kid,
                                             "use", "sig", "alg", "ES256"));
    }
    return json_pack("{s:o}", "keys", arr);
}

/* base64url(json) into out (cap bytes). Returns length or 0. */
static size_t jwt_encode_part(json_t *v, char *out, size_t cap)
{
    char *s = json_dumps(v, JSON_COMPACT);
    if (!s)
        return 0;
    size_t n = strlen(s), r = 0;
    if (crypto_b64url_len(n) + 1 <= cap)
        r = crypto_b64url_encode(s, n, out);
    free(s);
    return r;
}

char *jwt_sign(const jwt_keyset *ks, const char *typ, json_t *claims)
{
    if (ks->signer < 0 || !json_is_object(claims))
        return NULL;
    const jwt_key *k = &ks->keys[ks->signer];
    json_t *hdr =
        json_pack("{s:s,s:s,s:s}", "alg", "ES256", "typ", typ ? typ : "JWT", "kid", k->kid);
    char *tok = xmalloc(JWT_MAX_LEN + 1);
    size_t n = jwt_encode_part(hdr, tok, JWT_MAX_LEN);
    json_decref(hdr);
    if (n == 0)
        goto fail;
    tok[n++] = '.';
    size_t m = jwt_encode_part(claims, tok + n, JWT_MAX_LEN - n);
    if (m == 0)
        goto fail;
    n += m;
    uint8_t sig[64];
    if (JWT_MAX_LEN - n < crypto_b64url_len(64) + 2 || crypto_ec_sign(k->key, tok, n, sig) != 0)
        goto fail;
    tok[n++] = '.';
    n += crypto_b64url_encode(sig, 64, tok + n);
    tok[n] = '\0';
    return tok;
fail:
    free(tok);
    return NULL;
}

const char *jwt_strerror(jwt_err e)
{
    switch (e) {
    case JWT_OK: return "ok";
    case JWT_EMALFORMED: return "malformed token";
    case JWT_EALG: return "algorithm not allowed";
    case JWT_EKID: return "unknown key id";
    case JWT_ETYP: return "wrong token type";
    case JWT_ESIG: return "bad signature";
    case JWT_EEXPIRED: return "token expired";
    case JWT_ENOTYET: return "token not yet valid";
    case JWT_EISS: return "wrong issuer";
    case JWT_EAUD: return "wrong audience";
    }
    return "invalid token";
}

/* Decodes one base64url part that must be a JSON object. NULL on any error. */
static json_t *jwt_decode_object(const char *p, size_t len, size_t cap)
{
    if (len == 0 || len > crypto_b64url_len(cap))
        return NULL;
    uint8_t *buf = xmalloc(cap + 1);
    size_t n;
    json_t *v = NULL;
    if (crypto_b64url_decode(p, len, buf, cap, &n) == 0) {
        json_error_t jerr;
        v = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, &jerr);
        if (v && !json_is_object(v)) {
            json_decref(v);
            v = NULL;
        }
    }
    free(buf);
    return v;
}

jwt_err jwt_check_time(json_t *claims, const jwt_expect *ex)
{
    json_t *exp = json_object_get(claims, "exp");
    if (!json_is_integer(exp))
        return JWT_EMALFORMED;
    if (ex->now > json_integer_value(exp) + ex->leeway)
        return JWT_EEXPIRED;
    json_t *nbf = json_object_get(claims, "nbf");
    if (nbf && (!json_is_integer(nbf) || json_integer_value(nbf) > ex->now + ex->leeway))
        return nbf && !json_is_integer(nbf) ? JWT_EMALFORMED : JWT_ENOTYET;
    json_t *iat = json_object_get(claims, "iat");
    if (iat && (!json_is_integer(iat) || json_integer_value(iat) > ex->now + ex->leeway))
        return iat && !json_is_integer(iat) ? JWT_EMALFORMED : JWT_ENOTYET;
    return JWT_OK;
}

static jwt_err jwt_check_claims(json_t *claims, const jwt_expect *ex)
{
    jwt_err e = jwt_check_time(claims, ex);
    if (e != JWT_OK)
        return e;
    if (ex->iss) {
        const char *iss = json_string_value(json_object_get(claims, "iss"));
        if (!iss || strcmp(iss, ex->iss) != 0)
            return JWT_EISS;
    }
    if (ex->aud) {
        json_t *aud = json_object_get(claims, "aud");
        int ok = 0;
        if (json_is_string(aud)) {
            ok = strcmp(json_string_value(aud), ex->aud) == 0;
        } else if (json_is_array(aud)) {
            size_t i;
            json_t *a;
            json_array_foreach(aud, i, a) if (json_is_string(a) &&
                                              strcmp(json_string_value(a), ex->aud) == 0) ok = 1;
        }
        if (!ok)
            return JWT_EAUD;
    }
    return JWT_OK;
}

static jwt_err jwt_parse(const jwt_keyset *ks, const char *token, size_t len, const jwt_expect *ex,
                         int check_sig, json_t **claims_out)
{
    if (claims_out)
        *claims_out = NULL;
    if (!token || len == 0 || len > JWT_MAX_LEN)
        return JWT_EMALFORMED;
    const char *d1 = memchr(token, '.', len);
    if (!d1)
        return JWT_EMALFORMED;
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return JWT_EMALFORMED;

    json_t *hdr = jwt_decode_object(token, (size_t)(d1 - token), JWT_MAX_HEADER);
    if (!hdr)
        return JWT_EMALFORMED;
    jwt_err err = JWT_OK;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    const char *typ = json_string_value(json_object_get(hdr, "typ"));
    const char *kid = json_string_value(json_object_get(hdr, "kid"));
    const jwt_key *key = NULL;
    if (!alg || strcmp(alg, "ES256") != 0 || json_object_get(hdr, "crit"))
        err = JWT_EALG;
    else if (ex->typ && (!typ || strcmp(typ, ex->typ) != 0))
        err = JWT_ETYP;
    else if (!kid || !(key = jwt_find(ks, kid)))
        err = JWT_EKID;
    json_decref(hdr);
    if (err != JWT_OK)
        return err;

    json_t *claims = jwt_decode_object(d1 + 1, (size_t)(d2 - d1 - 1), JWT_MAX_LEN);
    if (!claims)
        return JWT_EMALFORMED;
    uint8_t sig[64];
    size_t siglen;
    if (crypto_b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token), sig, sizeof(sig), &siglen) !=
            0 ||
        siglen != 64) {
        json_decref(claims);
        return JWT_EMALFORMED;
    }
    err = jwt_check_claims(claims, ex);
    if (err == JWT_OK && check_sig && !crypto_ec_verify(key->key, token, (size_t)(d2 - token), sig))
        err = JWT_ESIG;
    if (err == JWT_OK && claims_out)
        *claims_out = claims;
    else
        json_decref(claims);
    return err;
}

jwt_err jwt_decode(const jwt_keyset *ks, const char *token, size_t len, const jwt_expect *ex,
                   json_t **claims)
{
    return jwt_parse(ks, token, len, ex, 0, claims);
}

jwt_err jwt_verify(const jwt_keyset *ks, const char *token, size_t len, const jwt_expect *ex,
                   json_t **claims)
{
    return jwt_parse(ks, token, len, ex, 1, claims);
}
