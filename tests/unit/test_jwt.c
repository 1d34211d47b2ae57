/* test_jwt: ES256 signing and strict verification (common/jwt.c): RFC 7638 kids, a token
 * signed by the openssl CLI, forgeries (none, HS256, other kid, changed payload, bad base64,
 * expired), claims checks, the JWKS round trip, the bounded cache, and signing and
 * verifying with one key set from several threads at once. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"
#include "jwt.h"
#include "ttl_cache.h"
#include "test.h"

static const char K1[] = "-----BEGIN EC PRIVATE KEY-----\n"
                         "MHcCAQEEID+E9XRFkFJh2FosxRYNCWrajQ++xqzHUgol4WGGro91oAoGCCqGSM49\n"
                         "AwEHoUQDQgAET6i6Cmd5Z3Ukw8nZ798GZq6uvktlnZLRcSCt5JmqL9mTZE0WLcqa\n"
                         "WFXvPOEU9uLja/EFCxy6rTVPGvKtmIGFKA==\n"
                         "-----END EC PRIVATE KEY-----\n";
static const char K2[] = "-----BEGIN EC PRIVATE KEY-----\n"
                         "MHcCAQEEILzKvwDotoVH80dvi1Pd7lXtePjz8PjnBgNjzJKjDAw4oAoGCCqGSM49\n"
                         "AwEHoUQDQgAEiRiDVhvDYacVCWTRWI1q7B5vcRDLxfic0H5z6eGDVWTfP04F7a4r\n"
                         "NY+7iVUNvJpuBJcyYl0Mw4HfadIGVVkhNg==\n"
                         "-----END EC PRIVATE KEY-----\n";
static const char K1_PUB[] = "-----BEGIN PUBLIC KEY-----\n"
                             "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAET6i6Cmd5Z3Ukw8nZ798GZq6uvktl\n"
                             "nZLRcSCt5JmqL9mTZE0WLcqaWFXvPOEU9uLja/EFCxy6rTVPGvKtmIGFKA==\n"
                             "-----END PUBLIC KEY-----\n";
/* Thumbprint of K1 computed with Python's hashlib from the openssl-extracted coordinates. */
static const char K1_KID[] = "NoDBy8uPrSnQV54as95dlic05vUz3SNMPTAdhDv3crE";
/* Signed by `openssl dgst -sha256 -sign` with K1 (DER converted to r||s), exp 2100. */
static const char OPENSSL_TOKEN[] =
    "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6Ik5vREJ5OHVQclNuUVY1NGFzOTVkbGljMDV2VXoz"
    "U05NUFRBZGhEdjNjckUifQ.eyJpc3MiOiJodHRwczovL2F1dGgudGVzdCIsImF1ZCI6InN1aXRlIiwic3ViIjoid"
    "TEiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMH0.bgm5ZwqoFGgTeLyJqx6RYuiz4gkG_WB_9UeB7m"
    "fiHMyM8T9u4di6fnS1DcL52jw7fjSzMzubBEoHTTVUzqNJHw";

static jwt_expect expect_now(void)
{
    jwt_expect ex = {.typ = "at+jwt",
                     .iss = "https://auth.test",
                     .aud = "suite",
                     .now = (int64_t)time(NULL),
                     .leeway = 30};
    return ex;
}

static json_t *claims_valid(void)
{
    int64_t now = (int64_t)time(NULL);
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "iss", "https://auth.test", "aud", "suite", "sub",
                     "user-1", "sid", "s-1", "iat", (json_int_t)now, "exp",
                     (json_int_t)(now + 900));
}

static jwt_keyset *keys_k1(void)
{
    jwt_keyset *ks = jwt_keyset_new();
    CHECK_INT(jwt_keyset_add_pem(ks, K1, strlen(K1)), 0);
    return ks;
}

/* b64url(json) helper for hand-made tokens. */
static char *part(const char *json)
{
    char *out = malloc(crypto_b64url_len(strlen(json)) + 1);
    crypto_b64url_encode(json, strlen(json), out);
    return out;
}

static void kid_is_rfc7638_thumbprint(void)
{
    jwt_keyset *ks = keys_k1();
    CHECK_STR(jwt_keyset_signing_kid(ks), K1_KID);
    jwt_keyset_free(ks);
}

static void sign_then_verify(void)
{
    jwt_keyset *ks = keys_k1();
    json_t *c = claims_valid();
    char *tok = jwt_sign(ks, "at+jwt", c);
    CHECK(tok != NULL);
    jwt_expect ex = expect_now();
    json_t *out = NULL;
    CHECK_INT(jwt_verify(ks, tok, strlen(tok), &ex, &out), JWT_OK);
    CHECK_STR(json_string_value(json_object_get(out, "sub")), "user-1");
    json_decref(out);
    free(tok);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void openssl_signed_token_verifies(void)
{
    jwt_keyset *ks = jwt_keyset_new();
    CHECK_INT(jwt_keyset_add_pem(ks, K1_PUB, strlen(K1_PUB)), 0); /* public key only */
    CHECK(jwt_keyset_signing_kid(ks) == NULL);
    jwt_expect ex = expect_now();
    json_t *out = NULL;
    CHECK_INT(jwt_verify(ks, OPENSSL_TOKEN, strlen(OPENSSL_TOKEN), &ex, &out), JWT_OK);
    CHECK_STR(json_string_value(json_object_get(out, "sub")), "u1");
    json_decref(out);
    jwt_keyset_free(ks);
}

static void forged_alg_none_and_hs256(void)
{
    jwt_keyset *ks = keys_k1();
    jwt_expect ex = expect_now();
    char payload[256];
    snprintf(payload, sizeof(payload),
             "{\"iss\":\"https://auth.test\",\"aud\":\"suite\",\"sub\":\"x\",\"exp\":%lld}",
             (long long)ex.now + 600);
    char *p = part(payload);
    char *h_none = part("{\"alg\":\"none\",\"typ\":\"at+jwt\"}");
    char tok[1024];
    snprintf(tok, sizeof(tok), "%s.%s.", h_none, p);
    CHECK_INT(jwt_verify(ks, tok, strlen(tok), &ex, NULL), JWT_EALG);

    /* HS256 keyed with the public key bytes: the classic confusion attack. */
    char hs[160];
    snprintf(hs, sizeof(hs), "{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", K1_KID);
    char *h_hs = part(hs);
    char si[1024];
    snprintf(si, sizeof(si), "%s.%s", h_hs, p);
    uint8_t mac[32];
    crypto_hmac_sha256(K1_PUB, strlen(K1_PUB), si, strlen(si), mac);
    char macb[64];
    crypto_b64url_encode(mac, 32, macb);
    snprintf(tok, sizeof(tok), "%s.%s", si, macb);
    CHECK_INT(jwt_verify(ks, tok, strlen(tok), &ex, NULL), JWT_EALG);

    /* "Es256" is not ES256; crit is refused. */
    char *h_case = part("{\"alg\":\"Es256\",\"typ\":\"at+jwt\"}");
    snprintf(tok, sizeof(tok), "%s.%s.%s", h_case, p, macb);
    CHECK_INT(jwt_verify(ks, tok, strlen(tok), &ex, NULL), JWT_EALG);
    free(h_case);
    free(h_none);
    free(h_hs);
    free(p);
    jwt_keyset_free(ks);
}

static void changed_payload_fails(void)
{
    jwt_keyset *ks = keys_k1();
    json_t *c = claims_valid();
    char *tok = jwt_sign(ks, "at+jwt", c);
    char *d1 = strchr(tok, '.'), *d2 = strchr(d1 + 1, '.');
    /* Re-encode the payload with another sub, keep the signature. */
    json_object_set_new(c, "sub", json_string("admin"));
    char *js = json_dumps(c, JSON_COMPACT);
    char *p = part(js);
    char forged[2048];
    snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)(d1 - tok), tok, p, d2);
    jwt_expect ex = expect_now();
    CHECK_INT(jwt_verify(ks, forged, strlen(forged), &ex, NULL), JWT_ESIG);
    /* A flipped bit of the signature too. */
    size_t n = strlen(tok);
    tok[n - 5] = tok[n - 5] == 'A' ? 'B' : 'A';
    CHECK_INT(jwt_verify(ks, tok, n, &ex, NULL), JWT_ESIG);
    free(p);
    free(js);
    free(tok);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void other_kid_and_unknown_key(void)
{
    jwt_keyset *k2 = jwt_keyset_new();
    CHECK_INT(jwt_keyset_add_pem(k2, K2, strlen(K2)), 0);
    json_t *c = claims_valid();
    char *tok = jwt_sign(k2, "at+jwt", c);
    jwt_keyset *ks = keys_k1();
    jwt_expect ex = expect_now();
    CHECK_INT(jwt_verify(ks, tok, strlen(tok), &ex, NULL), JWT_EKID);
    /* Rotation: a set with both keys verifies both, signs with the last one. */
    CHECK_INT(jwt_keyset_add_pem(ks, K2, strlen(K2)), 0);
    CHECK_INT(jwt_keyset_count(ks), 2);
    CHECK_INT(jwt_verify(ks, tok, strlen(tok), &ex, NULL), JWT_OK);
    CHECK(strcmp(jwt_keyset_signing_kid(ks), K1_KID) != 0);
    free(tok);
    json_decref(c);
    jwt_keyset_free(ks);
    jwt_keyset_free(k2);
}

static void bad_base64_and_shape(void)
{
    jwt_keyset *ks = keys_k1();
    json_t *c = claims_valid();
    char *tok = jwt_sign(ks, "at+jwt", c);
    CHECK(tok != NULL);
    if (!tok)
        return;
    jwt_expect ex = expect_now();
    size_t n = strlen(tok);
    char buf[2048];
    /* padding, a '+' and a '/' (standard alphabet) are refused */
    snprintf(buf, sizeof(buf), "%s=", tok);
    CHECK_INT(jwt_verify(ks, buf, strlen(buf), &ex, NULL), JWT_EMALFORMED);
    memcpy(buf, tok, n + 1);
    buf[5] = '+';
    CHECK_INT(jwt_verify(ks, buf, n, &ex, NULL), JWT_EMALFORMED);
    memcpy(buf, tok, n + 1);
    buf[n - 3] = '/';
    CHECK_INT(jwt_verify(ks, buf, n, &ex, NULL), JWT_EMALFORMED);
    CHECK_INT(jwt_verify(ks, "a.b", 3, &ex, NULL), JWT_EMALFORMED);
    CHECK_INT(jwt_verify(ks, "a.b.c.d", 7, &ex, NULL), JWT_EMALFORMED);
    CHECK_INT(jwt_verify(ks, "", 0, &ex, NULL), JWT_EMALFORMED);
    CHECK_INT(jwt_verify(ks, "..", 2, &ex, NULL), JWT_EMALFORMED);
    /* a truncated signature */
    CHECK_INT(jwt_verify(ks, tok, n - 4, &ex, NULL), JWT_EMALFORMED);
    /* a header that is JSON but not an object */
    char *h = part("[1]");
    const char *rest = strchr(tok, '.');
    snprintf(buf, sizeof(buf), "%s%s", h, rest ? rest : "");
    CHECK_INT(jwt_verify(ks, buf, strlen(buf), &ex, NULL), JWT_EMALFORMED);
    free(h);
    free(tok);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void claims_checked(void)
{
    jwt_keyset *ks = keys_k1();
    jwt_expect ex = expect_now();
    json_t *c = claims_valid();
    json_object_set_new(c, "exp", json_integer(ex.now - 31));
    char *tok = jwt_sign(ks, "at+jwt", c);
    CHECK_INT(jwt_verify(ks, tok, strlen(tok), &ex, NULL), JWT_EEXPIRED);
    free(tok);
    /* within the leeway */
    json_object_set_new(c, "exp", json_integer(ex.now - 10));
    tok = jwt_sign(ks, "at+jwt", c);
    CHECK_INT(jwt_verify(ks, tok, strlen(tok), &ex, NULL), JWT_OK);
    free(tok);
    json_object_set_new(c, "exp", json_integer(ex.now + 600));
    tok = jwt_sign(ks, "svc", c);
    CHECK_INT(jwt_verify(ks, tok, strlen(tok), &ex, NULL), JWT_ETYP);
    free(tok);
    json_object_set_new(c, "iss", json_string("https://evil.test"));
    tok = jwt_sign(ks, "at+jwt", c);
    CHECK_INT(jwt_verify(ks, tok, strlen(tok), &ex, NULL), JWT_EISS);
    free(tok);
    json_object_set_new(c, "iss", json_string("https://auth.test"));
    json_object_set_new(c, "aud", json_pack("[s,s]", "payments", "storage"));
    tok = jwt_sign(ks, "at+jwt", c);
    CHECK_INT(jwt_verify(ks, tok, strlen(tok), &ex, NULL), JWT_EAUD);
    ex.aud = "storage";
    CHECK_INT(jwt_verify(ks, tok, strlen(tok), &ex, NULL), JWT_OK);
    free(tok);
    json_object_set_new(c, "nbf", json_integer(ex.now + 3600));
    tok = jwt_sign(ks, "at+jwt", c);
    CHECK_INT(jwt_verify(ks, tok, strlen(tok), &ex, NULL), JWT_ENOTYET);
    free(tok);
    json_object_del(c, "nbf");
    json_object_set_new(c, "exp", json_string("soon"));
    tok = jwt_sign(ks, "at+jwt", c);
    CHECK_INT(jwt_verify(ks, tok, strlen(tok), &ex, NULL), JWT_EMALFORMED);
    free(tok);
    json_decref(c);
    jwt_keyset_free(ks);
}

static void jwks_round_trip(void)
{
    jwt_keyset *ks = keys_k1();
    CHECK_INT(jwt_keyset_add_pem(ks, K2, strlen(K2)), 0);
    json_t *jwks = jwt_keyset_jwks(ks);
    CHECK_INT(json_array_size(json_object_get(jwks, "keys")), 2);
    json_t *k0 = json_array_get(json_object_get(jwks, "keys"), 0);
    CHECK_STR(json_string_value(json_object_get(k0, "kid")), K1_KID);
    CHECK(json_object_get(k0, "d") == NULL); /* never the private part */
    char *doc = json_dumps(jwks, JSON_COMPACT);
    jwt_keyset *pub = jwt_keyset_new();
    CHECK_INT(jwt_keyset_add_jwks(pub, doc, strlen(doc)), 2);
    CHECK(jwt_keyset_has_kid(pub, K1_KID));
    CHECK(jwt_keyset_signing_kid(pub) == NULL);
    jwt_expect ex = expect_now();
    CHECK_INT(jwt_verify(pub, OPENSSL_TOKEN, strlen(OPENSSL_TOKEN), &ex, NULL), JWT_OK);
    CHECK_INT(jwt_keyset_add_jwks(pub, "{\"keys\":3}", 10), -1);
    CHECK_INT(jwt_keyset_add_jwks(pub, "nope", 4), -1);
    free(doc);
    json_decref(jwks);
    jwt_keyset_free(pub);
    jwt_keyset_free(ks);
}

static void cache_bounded_and_expiring(void)
{
    ttl_cache *c = ttl_cache_new(3);
    uint8_t k[5][32];
    for (int i = 0; i < 5; i++)
        crypto_sha256(&i, sizeof(i), k[i]);
    json_t *v = json_string("v");
    ttl_cache_put(c, k[0], v, 1000);
    ttl_cache_put(c, k[1], v, 2000);
    ttl_cache_put(c, k[2], v, 3000);
    CHECK(ttl_cache_get(c, k[0], 500) == v);
    CHECK(ttl_cache_get(c, k[0], 1000) == NULL); /* expired: dropped */
    CHECK_INT(ttl_cache_size(c), 2);
    ttl_cache_put(c, k[3], v, 3000);
    ttl_cache_put(c, k[4], v, 3000); /* full: the oldest (k1) goes */
    CHECK_INT(ttl_cache_size(c), 3);
    CHECK(ttl_cache_get(c, k[1], 0) == NULL);
    CHECK(ttl_cache_get(c, k[4], 0) == v);
    ttl_cache_put(c, k[4], v, 10); /* replace */
    CHECK_INT(ttl_cache_size(c), 3);
    CHECK(ttl_cache_get(c, k[4], 20) == NULL);
    ttl_cache_remove(c, k[3]);
    CHECK(ttl_cache_get(c, k[3], 0) == NULL);
    ttl_cache_free(c);
    json_decref(v);
}

/* svc-auth signs and verifies on threadpool threads with one shared key set: every result
 * must be the one a single thread gets (crypto.c warms the key tables at load). */
#define MT_THREADS 4
#define MT_ROUNDS  40

typedef struct mt_arg {
    jwt_keyset *ks;
    int bad;
} mt_arg;

static void *mt_worker(void *p)
{
    mt_arg *a = p;
    for (int i = 0; i < MT_ROUNDS; i++) {
        json_t *c = claims_valid();
        char *tok = jwt_sign(a->ks, "at+jwt", c);
        json_decref(c);
        if (!tok) {
            a->bad++;
            continue;
        }
        jwt_expect ex = expect_now();
        json_t *out = NULL;
        if (jwt_verify(a->ks, tok, strlen(tok), &ex, &out) != JWT_OK)
            a->bad++;
        json_decref(out);
        size_t n = strlen(tok);
        tok[n - 3] = tok[n - 3] == 'A' ? 'B' : 'A'; /* another signature: must fail */
        if (jwt_verify(a->ks, tok, n, &ex, NULL) == JWT_OK)
            a->bad++;
        free(tok);
    }
    return NULL;
}

static void shared_keys_across_threads(void)
{
    jwt_keyset *ks = keys_k1();
    pthread_t th[MT_THREADS];
    mt_arg args[MT_THREADS];
    for (int i = 0; i < MT_THREADS; i++) {
        args[i].ks = ks;
        args[i].bad = 0;
        CHECK_INT(pthread_create(&th[i], NULL, mt_worker, &args[i]), 0);
    }
    for (int i = 0; i < MT_THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(args[i].bad, 0);
    }
    jwt_keyset_free(ks);
}

int main(void)
{
    test_suite = "jwt";
    if (crypto_init() != 0) {
        printf("FAIL jwt/crypto_init\n");
        return 1;
    }
    RUN(kid_is_rfc7638_thumbprint);
    RUN(sign_then_verify);
    RUN(openssl_signed_token_verifies);
    RUN(forged_alg_none_and_hs256);
    RUN(changed_payload_fails);
    RUN(other_kid_and_unknown_key);
    RUN(bad_base64_and_shape);
    RUN(claims_checked);
    RUN(jwks_round_trip);
    RUN(cache_bounded_and_expiring);
    RUN(shared_keys_across_threads);
    return TEST_EXIT();
}
