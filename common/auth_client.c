/* auth_client: caller validation by POST /auth/me with a sub-second answer cache, and
 * service-token verification against auth's JWKS (see auth_client.h). */
#include "auth_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "cookie.h"
#include "crypto.h"
#include "jwt.h"
#include "ttl_cache.h"
#include "log.h"

#define AC_MAX_CREDENTIAL 4096
#define AC_LEEWAY_S       30

typedef struct ac_waiter {
    http_req *req;
    auth_client_fn cb;
    void *ud;
    char *token;
    struct ac_waiter *next;
} ac_waiter;

struct auth_client {
    uv_loop_t *loop;
    upstream *up;
    auth_client_opts o;
    char service[64], issuer[256];
    ttl_cache *answers;    /* SHA-256(credential) -> {"status":200|401,...identity} */
    ttl_cache *svc_tokens; /* SHA-256(service token) -> verified claims */
    jwt_keyset *jwks;
    uint64_t jwks_fetched_ms; /* 0: never */
    int jwks_inflight;
    ac_waiter *jwks_waiters;
    int refs; /* 1 for the owner + 1 per request in flight */
    int closing;
};

void auth_client_opts_default(auth_client_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->service = "";
    o->issuer = config_str("AUTH_ISSUER", "suite-auth");
    o->cache_ttl_ms = 500;
    o->cache_max = 10000;
    o->timeout_ms = 2000;
    o->jwks_refresh_min_ms = 5000;
}

auth_client *auth_client_new(uv_loop_t *loop, upstream *auth, const auth_client_opts *o)
{
    auth_client *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->loop = loop;
    c->up = auth;
    c->o = *o;
    if (c->o.cache_ttl_ms > 1000)
        c->o.cache_ttl_ms = 1000;
    snprintf(c->service, sizeof(c->service), "%s", o->service ? o->service : "");
    snprintf(c->issuer, sizeof(c->issuer), "%s", o->issuer ? o->issuer : "suite-auth");
    c->answers = ttl_cache_new(o->cache_max ? o->cache_max : 10000);
    c->svc_tokens = ttl_cache_new(o->cache_max ? o->cache_max : 10000);
    c->jwks = jwt_keyset_new();
    c->refs = 1;
    return c;
}

static void ac_unref(auth_client *c)
{
    if (--c->refs > 0)
        return;
    ttl_cache_free(c->answers);
    ttl_cache_free(c->svc_tokens);
    jwt_keyset_free(c->jwks);
    free(c);
}

void auth_client_free(auth_client *c)
{
    if (!c)
        return;
    c->closing = 1;
    ac_unref(c);
}

int auth_identity_has_role(const auth_identity *id, unsigned role)
{
    return (id->roles & role) != 0;
}

void auth_client_reply_error(http_req *req, int status)
{
    if (status == 401) {
        http_resp_header(req, "WWW-Authenticate", "Bearer realm=\"suite\"");
        http_reply_error(req, 401, "unauthorized", "A valid access token or API key is required.");
    } else if (status == 403) {
        http_reply_error(req, 403, "forbidden", "This credential may not call this endpoint.");
    } else {
        http_resp_header(req, "Retry-After", "1");
        http_reply_error(req, 503, "unavailable", "Cannot check credentials now; retry shortly.");
    }
}

static const struct {
    const char *name;
    unsigned bit;
} ac_roles[] = {
    {"user", AUTH_ROLE_USER},
    {"org_admin", AUTH_ROLE_ORG_ADMIN},
    {"admin", AUTH_ROLE_ADMIN},
};

unsigned auth_identity_role_bits(const json_t *roles)
{
    unsigned bits = 0;
    for (size_t i = 0; i < json_array_size(roles); i++) {
        const char *s = json_string_value(json_array_get(roles, i));
        for (size_t j = 0; s && j < sizeof(ac_roles) / sizeof(ac_roles[0]); j++)
            if (strcmp(s, ac_roles[j].name) == 0)
                bits |= ac_roles[j].bit;
    }
    return bits;
}

static void ac_copy(char *dst, size_t cap, json_t *v)
{
    const char *s = json_string_value(v);
    snprintf(dst, cap, "%s", s ? s : "");
}

static void ac_identity_from(json_t *v, auth_identity *id)
{
    memset(id, 0, sizeof(*id));
    const char *kind = json_string_value(json_object_get(v, "auth"));
    id->kind = kind && strcmp(kind, "api_key") == 0 ? AUTH_ID_API_KEY : AUTH_ID_TOKEN;
    ac_copy(id->sub, sizeof(id->sub), json_object_get(v, "sub"));
    ac_copy(id->email, sizeof(id->email), json_object_get(v, "email"));
    ac_copy(id->org, sizeof(id->org), json_object_get(v, "organization"));
    ac_copy(id->sid, sizeof(id->sid), json_object_get(v, "sid"));
    id->exp = json_integer_value(json_object_get(v, "exp"));
    id->roles = auth_identity_role_bits(json_object_get(v, "roles"));
}

/* Calls cb with a cached or fresh answer object ({"status":200,...} or {"status":401}). */
static void ac_answer(json_t *ans, auth_client_fn cb, void *ud)
{
    int status = (int)json_integer_value(json_object_get(ans, "status"));
    if (status == 200) {
        auth_identity id;
        ac_identity_from(ans, &id);
        cb(200, &id, ud);
    } else {
        cb(status, NULL, ud);
    }
}

/* ---- POST /auth/me ---- */
/* Requests that present a credential whose lookup is already in flight wait for its answer
 * instead of asking auth again (when a cached answer expires under load, one call, not one
 * per request in flight): ttl_cache_join on the answer cache. */
typedef struct ac_call {
    auth_client_fn cb;
    void *ud;
} ac_call;

typedef struct ac_fetch {
    auth_client *c;
    uint8_t key[32];
} ac_fetch;

static void ac_call_answer(int status, json_t *ans, void *ud)
{
    ac_call call = *(ac_call *)ud;
    free(ud);
    if (ans)
        ac_answer(ans, call.cb, call.ud);
    else
        call.cb(status, NULL, call.ud);
}

static void ac_on_me(hc_err err, const http_response *resp, void *ud)
{
    ac_fetch *f = ud;
    auth_client *c = f->c;
    json_t *ans = NULL;
    if (!c->closing && err == HC_OK && resp->status == 200) {
        json_error_t jerr;
        json_t *v = json_loadb(resp->body, resp->body_len, 0, &jerr);
        if (json_is_object(v) && json_is_true(json_object_get(v, "active")) &&
            json_is_string(json_object_get(v, "sub"))) {
            ans = json_deep_copy(v);
            json_object_set_new(ans, "status", json_integer(200));
        }
        json_decref(v);
    } else if (!c->closing && err == HC_OK && resp->status == 401) {
        ans = json_pack("{s:i}", "status", 401);
    }
    if (!ans && !c->closing)
        log_warn(NULL, "auth /auth/me failed: %s (status %d)", hc_strerror(err),
                 err == HC_OK ? resp->status : 0);
    ttl_cache_done(c->answers, f->key, ans ? 200 : 503, ans,
                   ans ? clock_mono_ms() + c->o.cache_ttl_ms : 0);
    json_decref(ans);
    free(f);
    ac_unref(c);
}

void auth_client_check(auth_client *c, http_req *req, auth_client_fn cb, void *ud)
{
    const char *authz = http_req_header(req, "Authorization");
    char cred[AC_MAX_CREDENTIAL + 16];
    if (authz) {
        if (strlen(authz) > AC_MAX_CREDENTIAL) {
            cb(401, NULL, ud);
            return;
        }
        snprintf(cred, sizeof(cred), "%s", authz);
    } else {
        /* a browser's cookie: the same token as a Bearer */
        char cookie[AC_MAX_CREDENTIAL + 1];
        if (cookie_get(req, "access_token", cookie, sizeof(cookie)) <= 0) {
            cb(401, NULL, ud);
            return;
        }
        snprintf(cred, sizeof(cred), "Bearer %s", cookie);
    }
    uint8_t key[32];
    crypto_sha256(cred, strlen(cred), key);
    json_t *ans = ttl_cache_get(c->answers, key, clock_mono_ms());
    if (ans) {
        ac_answer(ans, cb, ud);
        return;
    }
    ac_call *call = calloc(1, sizeof(*call));
    if (!call)
        abort();
    call->cb = cb;
    call->ud = ud;
    if (!ttl_cache_join(c->answers, key, ac_call_answer, call))
        return;
    ac_fetch *f = calloc(1, sizeof(*f));
    if (!f)
        abort();
    f->c = c;
    memcpy(f->key, key, 32);
    c->refs++;
    http_header h[] = {{"Authorization", cred}, {"X-Request-ID", http_req_id(req)}};
    upstream_fetch(c->up, "POST", "/auth/me", h, 2, NULL, 0, c->o.timeout_ms, ac_on_me, f);
}

/* ---- X-Service-Token ---- */
static int ac_verify_service(auth_client *c, const char *token, auth_identity *id)
{
    /* returns 200, 401, or 0 when the kid is unknown (the JWKS should be fetched) */
    size_t len = strlen(token);
    uint8_t key[32];
    crypto_sha256(token, len, key);
    jwt_expect ex = {.typ = "svc",
                     .iss = c->issuer,
                     .aud = c->service,
                     .now = (int64_t)time(NULL),
                     .leeway = AC_LEEWAY_S};
    json_t *claims = ttl_cache_get(c->svc_tokens, key, clock_mono_ms());
    jwt_err err;
    if (claims) {
        err = jwt_check_time(claims, &ex);
        json_incref(claims);
    } else {
        err = jwt_verify(c->jwks, token, len, &ex, &claims);
        if (err == JWT_OK) {
            int64_t ttl = json_integer_value(json_object_get(claims, "exp")) - ex.now;
            if (ttl > 0)
                ttl_cache_put(c->svc_tokens, key, claims, clock_mono_ms() + (uint64_t)ttl * 1000u);
        }
    }
    if (err == JWT_EKID)
        return 0;
    if (err != JWT_OK) {
        json_decref(claims);
        return 401;
    }
    memset(id, 0, sizeof(*id));
    id->kind = AUTH_ID_SERVICE;
    ac_copy(id->sub, sizeof(id->sub), json_object_get(claims, "sub"));
    id->exp = json_integer_value(json_object_get(claims, "exp"));
    json_decref(claims);
    return 200;
}

static void ac_finish_service(auth_client *c, ac_waiter *w, int allow_fetch);

static void ac_on_jwks(hc_err err, const http_response *resp, void *ud)
{
    auth_client *c = ud;
    c->jwks_inflight = 0;
    if (!c->closing && err == HC_OK && resp->status == 200) {
        jwt_keyset *ks = jwt_keyset_new();
        if (jwt_keyset_add_jwks(ks, resp->body, resp->body_len) > 0) {
            jwt_keyset_free(c->jwks);
            c->jwks = ks;
        } else {
            jwt_keyset_free(ks);
            log_warn(NULL, "auth JWKS has no usable key");
        }
    } else if (!c->closing) {
        log_warn(NULL, "auth JWKS fetch failed: %s", hc_strerror(err));
    }
    int ok = err == HC_OK && resp->status == 200 && jwt_keyset_count(c->jwks) > 0;
    ac_waiter *w = c->jwks_waiters;
    c->jwks_waiters = NULL;
    while (w) {
        ac_waiter *next = w->next;
        if (c->closing || !ok) {
            w->cb(c->closing || jwt_keyset_count(c->jwks) == 0 ? 503 : 401, NULL, w->ud);
            free(w->token);
            free(w);
        } else {
            ac_finish_service(c, w, 0);
        }
        w = next;
    }
    ac_unref(c);
}

/* Verifies w's token; on an unknown kid fetches the JWKS (when allowed and not too recent)
 * and tries again after. Frees w. */
static void ac_finish_service(auth_client *c, ac_waiter *w, int allow_fetch)
{
    auth_identity id;
    int st = ac_verify_service(c, w->token, &id);
    uint64_t now = clock_mono_ms();
    if (st == 0 && allow_fetch &&
        (c->jwks_fetched_ms == 0 || now - c->jwks_fetched_ms >= c->o.jwks_refresh_min_ms ||
         c->jwks_inflight)) {
        w->next = c->jwks_waiters;
        c->jwks_waiters = w;
        if (!c->jwks_inflight) {
            c->jwks_inflight = 1;
            c->jwks_fetched_ms = now;
            c->refs++;
            upstream_fetch(c->up, "GET", "/.well-known/jwks.json", NULL, 0, NULL, 0,
                           c->o.timeout_ms, ac_on_jwks, c);
        }
        return;
    }
    if (st == 200)
        w->cb(200, &id, w->ud);
    else
        w->cb(st == 0 && jwt_keyset_count(c->jwks) == 0 ? 503 : 401, NULL, w->ud);
    free(w->token);
    free(w);
}

void auth_client_check_service(auth_client *c, http_req *req, auth_client_fn cb, void *ud)
{
    const char *tok = http_req_header(req, "X-Service-Token");
    if (!tok || !*tok || strlen(tok) > JWT_MAX_LEN) {
        cb(401, NULL, ud);
        return;
    }
    ac_waiter *w = calloc(1, sizeof(*w));
    w->req = req;
    w->cb = cb;
    w->ud = ud;
    w->token = strdup(tok);
    ac_finish_service(c, w, 1);
}
