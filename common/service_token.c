/* service_token: a cached, single-flight service token from svc-auth (see service_token.h). */
#include "service_token.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "clock.h"
#include "crypto.h"
#include "log.h"
#include "ttl_cache.h"
#include "xalloc.h"

#define SERVICE_TOKEN_TIMEOUT_MS 5000

struct service_token {
    uv_loop_t *loop;
    upstream *auth;
    char *service, *secret, *audience;
    uint8_t key[32]; /* of the one entry: SHA-256 of audience */
    ttl_cache *cache;
    int fetching; /* a request to auth is in flight (it owns t when freed meanwhile) */
    int freed;
};

typedef struct st_waiter {
    service_token_fn cb;
    void *ud;
} st_waiter;

unsigned long service_token_margin_ms(unsigned long lifetime_ms)
{
    /* + 1 s: exp is in whole seconds from auth's iat, so the token may live up to 1 s less
     * than expires_in from when we got it. */
    unsigned long m = lifetime_ms / 5 + 1000;
    if (m > 30000)
        m = 30000;
    return m < lifetime_ms ? m : lifetime_ms / 2;
}

service_token *service_token_new(uv_loop_t *loop, upstream *auth, const char *service,
                                 const char *secret, const char *audience)
{
    service_token *t = xcalloc(1, sizeof *t);
    t->loop = loop;
    t->auth = auth;
    t->service = xstrdup(service);
    t->secret = xstrdup(secret);
    t->audience = xstrdup(audience);
    crypto_sha256(audience, strlen(audience), t->key);
    t->cache = ttl_cache_new(1);
    return t;
}

static void service_token_destroy(service_token *t)
{
    ttl_cache_free(t->cache);
    free(t->service);
    free(t->secret);
    free(t->audience);
    free(t);
}

void service_token_free(service_token *t)
{
    if (!t)
        return;
    t->freed = 1;
    if (!t->fetching)
        service_token_destroy(t);
}

void service_token_invalidate(service_token *t)
{
    ttl_cache_remove(t->cache, t->key);
}

static void service_token_answered(int status, json_t *value, void *ud)
{
    st_waiter *w = ud;
    w->cb(status, value ? json_string_value(value) : NULL, w->ud);
    free(w);
}

static void service_token_fetched(hc_err err, const http_response *resp, void *ud)
{
    service_token *t = ud;
    t->fetching = 0;
    if (t->freed) {
        service_token_destroy(t);
        return;
    }
    int status = err != HC_OK ? 503 : resp->status;
    json_t *body = NULL, *tok = NULL;
    json_int_t expires_in = 0;
    if (err == HC_OK && resp->status == 200) {
        body = json_loadb(resp->body, resp->body_len, 0, NULL);
        const char *s = NULL;
        if (!body ||
            json_unpack(body, "{s:s, s:I}", "access_token", &s, "expires_in", &expires_in) != 0 ||
            expires_in < 1) {
            status = 502;
        } else {
            tok = json_string(s);
        }
    }
    if (status != 200)
        log_emit(LOG_WARN, NULL,
                 json_pack("{s:s, s:i, s:s}", "service", t->service, "status", status, "error",
                           err != HC_OK ? hc_strerror(err) : ""),
                 "no service token from auth");
    unsigned long life = (unsigned long)expires_in * 1000ul;
    uint64_t expires = tok ? clock_mono_ms() + life - service_token_margin_ms(life) : 0;
    ttl_cache_done(t->cache, t->key, status, tok, expires);
    json_decref(tok);
    json_decref(body);
}

void service_token_get(service_token *t, service_token_fn cb, void *ud)
{
    json_t *v = ttl_cache_get(t->cache, t->key, clock_mono_ms());
    if (v) {
        cb(200, json_string_value(v), ud);
        return;
    }
    st_waiter *w = xmalloc(sizeof *w);
    w->cb = cb;
    w->ud = ud;
    if (!ttl_cache_join(t->cache, t->key, service_token_answered, w))
        return;
    json_t *req = json_pack("{s:s, s:s, s:s}", "service", t->service, "secret", t->secret,
                            "audience", t->audience);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    http_header h[] = {{"Content-Type", "application/json"}};
    t->fetching = 1;
    upstream_fetch(t->auth, "POST", "/internal/service-token", h, 1, body, strlen(body),
                   SERVICE_TOKEN_TIMEOUT_MS, service_token_fetched, t);
    free(body);
}
