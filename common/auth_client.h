/* auth_client: how any service learns who is calling.
 *
 *   - auth_client_check(): the caller's Authorization (Bearer access token or ApiKey; else the
 *     access_token cookie) is validated by POST /auth/me on an auth instance through the
 *     upstream pool (directly, never through the public gateway), passing X-Request-ID on.
 *     Each answer (identity or 401) is cached for at most cache_ttl_ms (< 1 s, bounded, keyed
 *     by the SHA-256 of the credential) so a logout takes effect everywhere within 1 s.
 *   - auth_client_check_service(): X-Service-Token (for /internal/ endpoints) is verified
 *     locally against the JWKS fetched from auth: ES256, typ "svc", iss, and this service's
 *     name in aud. The JWKS is fetched on first use and again on an unknown kid, at most
 *     once per jwks_refresh_min_ms.
 *
 * Callbacks may run before the check function returns (cache hit). Event loop thread only. */
#ifndef COMMON_AUTH_CLIENT_H
#define COMMON_AUTH_CLIENT_H

#include <stddef.h>
#include <jansson.h>
#include <uv.h>

#include "http_server.h"
#include "upstream.h"

typedef struct auth_client auth_client;

typedef enum {
    AUTH_ID_TOKEN = 1, /* a user's access token */
    AUTH_ID_API_KEY,   /* a user's API key */
    AUTH_ID_SERVICE,   /* another service (X-Service-Token): sub is its name */
} auth_id_kind;

#define AUTH_ROLE_USER      1u
#define AUTH_ROLE_ORG_ADMIN 2u
#define AUTH_ROLE_ADMIN     4u

typedef struct auth_identity {
    auth_id_kind kind;
    char sub[64];    /* user id, or the calling service's name */
    char email[256]; /* "" for services */
    char org[64];    /* organization id, "" for services */
    char sid[64];    /* session id of an access token, else "" */
    unsigned roles;  /* AUTH_ROLE_* bits */
    long long exp;   /* token expiry (unix seconds), 0 for API keys */
} auth_identity;

typedef struct auth_client_opts {
    const char *service;          /* this service's name: the audience of service tokens */
    const char *issuer;           /* expected iss of service tokens: AUTH_ISSUER or "suite-auth" */
    unsigned cache_ttl_ms;        /* 500; values over 1000 are lowered to 1000 */
    size_t cache_max;             /* 10000 answers */
    unsigned timeout_ms;          /* 2000: the /auth/me call */
    unsigned jwks_refresh_min_ms; /* 5000 */
} auth_client_opts;

void auth_client_opts_default(auth_client_opts *o);
/* auth: the upstream of the auth instances (stays the caller's). */
auth_client *auth_client_new(uv_loop_t *loop, upstream *auth, const auth_client_opts *o);
/* In-flight checks are answered 503 later; run the loop after. */
void auth_client_free(auth_client *c);

/* status 200: id is the caller (valid during the callback only); 401: missing, malformed,
 * forged, expired or revoked credential; 503: auth could not be asked (answer 503). */
typedef void (*auth_client_fn)(int status, const auth_identity *id, void *ud);

void auth_client_check(auth_client *c, http_req *req, auth_client_fn cb, void *ud);
void auth_client_check_service(auth_client *c, http_req *req, auth_client_fn cb, void *ud);

/* Replies the error for a failed check: 401 with WWW-Authenticate, or 503 with Retry-After. */
void auth_client_reply_error(http_req *req, int status);
int auth_identity_has_role(const auth_identity *id, unsigned role);
/* The AUTH_ROLE_* bits of a JSON array of role names ("user", "org_admin", "admin"; others
 * are ignored). */
unsigned auth_identity_role_bits(const json_t *roles);

#endif
