/* auth.h: svc-auth's internal interfaces shared by its files: the process-wide state and
 * settings, the request helpers, credential authentication, and each resource's routes. */
#ifndef SVC_AUTH_H
#define SVC_AUTH_H

#include <stdint.h>
#include <jansson.h>

#include "auth_client.h"
#include "cidr.h"
#include "clock.h"
#include "jwt.h"
#include "ttl_cache.h"
#include "router.h"
#include "service.h"

#define AUTH_TOKEN_TYP    "at+jwt"
#define AUTH_SERVICE_TYP  "svc"
#define AUTH_LEEWAY_S     30
#define AUTH_MAX_SERVICES 32

typedef struct auth_service_secret {
    char *name;
    uint8_t secret_hash[32]; /* SHA-256 of the secret: compared in constant time */
} auth_service_secret;

/* The one state of the process (like Redis's `server`). */
typedef struct auth_state {
    service svc;
    const char *issuer, *audience;
    long access_ttl_s, refresh_ttl_s, refresh_grace_s, service_ttl_s;
    char admin_email[256];      /* AUTH_ADMIN_EMAIL lowercased, "" when unset */
    const char *admin_password; /* AUTH_ADMIN_PASSWORD(_FILE): used at start-up only */
    auth_service_secret services[AUTH_MAX_SERVICES];
    size_t n_services;
    jwt_keyset *keys;
    ttl_cache *token_cache;     /* SHA-256(access token) -> verified claims, until exp */
    ttl_cache *session_cache;   /* SHA-256(sid) -> true (alive, < 1 s) / false (revoked) */
    ttl_cache *apikey_cache;    /* SHA-256(key) -> identity object or null, < 1 s */
    unsigned positive_ttl_ms;   /* how long an "alive" fact is trusted without PostgreSQL */
    cidr_list *trusted_proxies; /* peers whose X-Real-IP is believed (TRUSTED_PROXIES) */
} auth_state;

extern auth_state auth;

int64_t auth_now_s(void);

/* pg_query on the service's pool; once the pool is closed (shutdown), cb gets PG_DOWN. */
void auth_pg(const char *sql, int nparams, const char *const *params, pg_query_fn cb, void *ud);
/* The revocation of one of the caller's own rows, by the uuid in path parameter param: sql
 * (an UPDATE ... RETURNING) gets $1 the uuid and $2 the caller's sub. 404 not_found (missing)
 * when param is not a uuid, as when no live row matches; a database error as
 * service_reply_pg_error; else done(res) (forgetting it in caches) and 204. */
void auth_pg_own_row(http_req *req, const auth_identity *id, const char *param, const char *missing,
                     const char *sql, void (*done)(const PGresult *res));
/* A query made for req failed (st is not PG_OK): the error answered as
 * service_reply_pg_error, ctx freed with ctx_free, and 1. 0 when it succeeded. */
int auth_pg_failed(http_req *req, pg_status st, const PGresult *res, void (*ctx_free)(void *),
                   void *ctx);

/* ---- request helpers (request.c) ---- */
typedef struct auth_field {
    const char *name;
    int required;
    size_t max_chars; /* 0: no limit */
    const char **out; /* borrowed from the object; NULL when absent */
} auth_field;

/* Parses the body as a JSON object with only the given string fields. On error replies 400
 * (invalid_json / invalid_request naming the field) and returns NULL; else the object (the
 * caller decrefs; the strings point into it). An empty body counts as {} when allow_empty. */
json_t *auth_body_fields(http_req *req, auth_field *fields, size_t n, int allow_empty);
/* The client's address: X-Real-IP (set by the gateway) when the TCP peer is a trusted proxy
 * (TRUSTED_PROXIES) and the header is an IP address; else the TCP peer itself. */
const char *auth_client_ip(http_req *req);
int auth_is_uuid(const char *s);
size_t auth_utf8_chars(const char *s);
void auth_sha256_hex(const char *s, size_t len, char out[65]);
void auth_reply_unauthorized(http_req *req, const char *code, const char *message, int me);
/* 503 overloaded with Retry-After: the ES256 lane (es256.h) is full. */
void auth_reply_es256_full(http_req *req);
/* The roles of a user: the stored ones (JSON array text), ["user"] when unreadable. */
json_t *auth_roles(const char *stored_json);
int auth_roles_has(json_t *roles, const char *role);
/* SQL fragment: a timestamptz column as RFC 3339 UTC text. */
#define AUTH_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* ---- who is calling (authn.c) ---- */
typedef enum { AUTH_KIND_TOKEN = 1, AUTH_KIND_API_KEY = 2 } auth_kind;

typedef struct auth_ident {
    auth_kind kind;
    char sub[40], sid[40], org[40], key_id[40];
    char email[256];
    json_t *roles; /* owned array */
    int64_t exp;
} auth_ident;

void auth_ident_free(auth_ident *id);
/* Done with the authentication: id is the caller's, to free (NULL when a reply was already
 * sent: 401 or 503). */
typedef void (*auth_ident_fn)(http_req *req, auth_ident *id, void *ud);
/* Authenticates Authorization: Bearer (or the access_token cookie) and, when allow_api_key,
 * Authorization: ApiKey. me selects the /auth/me error body ({"active":false,...}). Only
 * /auth/me calls it: every other route needing a caller is added with router_add_auth. */
void auth_authenticate(http_req *req, int allow_api_key, int me, auth_ident_fn cb, void *ud);
/* The router's authenticator (router_set_authn): an access token, no API key. */
void auth_route_authn(void *ctx, http_req *req, router_authed_fn done, void *done_ud);
void auth_ident_to_identity(const auth_ident *id, auth_identity *out);
/* ---- issuing (tokens.c) ---- */
/* Issues a new pair for the session in a login/refresh answer (200 + cookies, or 500). The
 * access token is signed on the threadpool (es256.h) in a place the caller reserved with
 * es256_reserve(): this call consumes it, whatever happens. */
void auth_reply_token_pair(http_req *req, const char *sub, const char *sid, const char *org,
                           const char *email, json_t *roles, const char *refresh_token);

/* ---- users (users.c) ---- */
int auth_email_valid(const char *email);

/* ---- the platform admin (admin.c) ---- */
/* Creates or updates the AUTH_ADMIN_EMAIL account (role admin, AUTH_ADMIN_PASSWORD) at
 * start-up, blocking, before the loop runs. 0 (also when no admin is configured) or -1. */
int admin_bootstrap(void);

/* ---- sessions: the revocation store (revocation.c) ---- */
typedef enum { AUTH_SESSION_ALIVE, AUTH_SESSION_REVOKED, AUTH_SESSION_ERROR } auth_session_state;
typedef void (*auth_session_fn)(auth_session_state st, void *ud);
/* Is the session alive? Local cache, then Redis (revoked facts only), then PostgreSQL. */
void auth_session_check(const char *sid, auth_session_fn cb, void *ud);
/* Records locally and in Redis that a session was revoked (already so in PostgreSQL). */
void auth_session_revoked(const char *sid);

/* ---- settings.c: the configuration from the environment ---- */
/* Fills auth from the environment and loads the signing keys; logs what is wrong. 0 or -1. */
int auth_settings_load(void);
void auth_settings_free(void);

/* ---- routes of each resource ---- */
void users_routes(router *r);
void sessions_routes(router *r);
void tokens_routes(router *r);
void api_keys_routes(router *r);
void invites_routes(router *r);
void jwks_routes(router *r);
void auth_clear_cookies(http_req *req);

#endif
