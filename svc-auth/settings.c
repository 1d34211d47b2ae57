/* settings: svc-auth's configuration from the environment (see deploy/.env.example): token
 * lifetimes, signing keys, the platform admin, service secrets, caches, trusted proxies. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "crypto.h"
#include "es256.h"
#include "log.h"
#include "passwords.h"
#include "xalloc.h"

auth_state auth; /* the one state of the process */

#define AUTH_TRUSTED_DEFAULT "127.0.0.0/8,::1/128"

static int load_keys(void)
{
    const char *paths = config_str("AUTH_SIGNING_KEYS", NULL);
    char **files;
    size_t n = config_list(paths, &files);
    if (n == 0) {
        log_error(NULL, "AUTH_SIGNING_KEYS must list the PEM files of the signing keys");
        return -1;
    }
    auth.keys = jwt_keyset_new();
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (jwt_keyset_add_pem_file(auth.keys, files[i]) != 0) {
            log_error(NULL, "AUTH_SIGNING_KEYS: %s is not a readable P-256 PEM key", files[i]);
            rc = -1;
        }
    }
    config_list_free(files, n);
    if (rc == 0 && !jwt_keyset_signing_kid(auth.keys)) {
        log_error(NULL, "AUTH_SIGNING_KEYS: no private key to sign with");
        rc = -1;
    }
    if (rc == 0)
        log_emit(LOG_INFO, NULL,
                 json_pack("{s:s,s:i}", "kid", jwt_keyset_signing_kid(auth.keys), "keys",
                           (int)jwt_keyset_count(auth.keys)),
                 "signing keys loaded");
    return rc;
}

static int load_services(void)
{
    char **items;
    size_t n = config_list(config_str("AUTH_SERVICE_SECRETS", ""), &items);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char *eq = strchr(items[i], '=');
        if (!eq || eq == items[i] || !eq[1] || auth.n_services == AUTH_MAX_SERVICES) {
            log_error(NULL, "AUTH_SERVICE_SECRETS: items are name=secret");
            rc = -1;
            break;
        }
        *eq = '\0';
        auth_service_secret *s = &auth.services[auth.n_services++];
        s->name = xstrdup(items[i]);
        crypto_sha256(eq + 1, strlen(eq + 1), s->secret_hash);
    }
    config_list_free(items, n);
    return rc;
}

/* The platform admin, bootstrapped at start-up (admin.c): both or neither. */
static int load_admin(void)
{
    const char *email = config_str("AUTH_ADMIN_EMAIL", "");
    const char *password = config_str("AUTH_ADMIN_PASSWORD", NULL);
    if (!*email) {
        if (password) {
            log_error(NULL, "AUTH_ADMIN_PASSWORD is set without AUTH_ADMIN_EMAIL");
            return -1;
        }
        return 0; /* no platform admin */
    }
    if (!auth_email_valid(email)) {
        log_error(NULL, "AUTH_ADMIN_EMAIL is not a valid email address");
        return -1;
    }
    if (!password || !*password) {
        log_error(NULL,
                  "AUTH_ADMIN_EMAIL is set without AUTH_ADMIN_PASSWORD (or "
                  "AUTH_ADMIN_PASSWORD_FILE): refusing to start without the admin's password");
        return -1;
    }
    size_t chars = auth_utf8_chars(password);
    if (chars < PASSWORDS_MIN_CHARS || chars > PASSWORDS_MAX_CHARS) {
        log_error(NULL, "AUTH_ADMIN_PASSWORD must have %d to %d characters", PASSWORDS_MIN_CHARS,
                  PASSWORDS_MAX_CHARS);
        return -1;
    }
    size_t i;
    for (i = 0; email[i] && i + 1 < sizeof(auth.admin_email); i++)
        auth.admin_email[i] =
            (char)((email[i] >= 'A' && email[i] <= 'Z') ? email[i] + 32 : email[i]);
    auth.admin_email[i] = '\0';
    auth.admin_password = password;
    return 0;
}

static int load_settings(void)
{
    auth.issuer = config_str("AUTH_ISSUER", "suite-auth");
    auth.audience = config_str("AUTH_AUDIENCE", "suite");
    auth.access_ttl_s = config_ms("AUTH_ACCESS_TTL", 15 * 60 * 1000L) / 1000;
    auth.refresh_ttl_s = config_ms("AUTH_REFRESH_TTL", 30L * 24 * 3600 * 1000) / 1000;
    auth.refresh_grace_s = config_ms("AUTH_REFRESH_GRACE", 0) / 1000;
    auth.service_ttl_s = config_ms("AUTH_SERVICE_TOKEN_TTL", 5 * 60 * 1000L) / 1000;
    auth.positive_ttl_ms = (unsigned)config_ms("AUTH_SESSION_CACHE_TTL", 400);
    if (auth.access_ttl_s < 1 || auth.refresh_ttl_s < 1 || auth.service_ttl_s < 1 ||
        auth.refresh_grace_s < 0 || auth.positive_ttl_ms > 1000) {
        log_error(NULL, "AUTH_*_TTL must be at least 1s, AUTH_SESSION_CACHE_TTL at most 1s");
        return -1;
    }
    if (load_admin() != 0)
        return -1;
    long cache = config_int("AUTH_TOKEN_CACHE", 10000);
    if (cache < 1) {
        log_error(NULL, "AUTH_TOKEN_CACHE must be at least 1");
        return -1;
    }
    auth.token_cache = ttl_cache_new((size_t)cache);
    auth.session_cache = ttl_cache_new((size_t)cache);
    auth.apikey_cache = ttl_cache_new((size_t)cache);
    /* Only these peers may say who the client is (X-Real-IP): the gateway. Locally it talks
     * over loopback; in containers, set the internal network the gateway is on. */
    char err[160];
    auth.trusted_proxies =
        cidr_list_parse(config_str("TRUSTED_PROXIES", AUTH_TRUSTED_DEFAULT), err, sizeof(err));
    if (!auth.trusted_proxies) {
        log_error(NULL, "TRUSTED_PROXIES: %s (comma-separated CIDRs)", err);
        return -1;
    }
    return load_services();
}

void auth_settings_free(void)
{
    passwords_shutdown();
    es256_shutdown();
    cidr_list_free(auth.trusted_proxies);
    ttl_cache_free(auth.token_cache);
    ttl_cache_free(auth.session_cache);
    ttl_cache_free(auth.apikey_cache);
    jwt_keyset_free(auth.keys);
    for (size_t i = 0; i < auth.n_services; i++)
        free(auth.services[i].name);
}

int auth_settings_load(void)
{
    return load_settings() == 0 && load_keys() == 0 ? 0 : -1;
}
