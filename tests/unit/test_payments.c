/* test_payments: svc-payments' pure parts: the ISO 4217 table (and that the migration holds
 * the same list), the state machine, webhook signatures, request validation, references and
 * idempotency fingerprints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "currency.h"
#include "idempotency.h"
#include "payments.h"
#include "state.h"
#include "test.h"
#include "webhook.h"

static void test_currency(void)
{
    char out[4];
    CHECK(currency_normalize("usd", out));
    CHECK_STR(out, "USD");
    CHECK(currency_normalize("eUr", out));
    CHECK_STR(out, "EUR");
    CHECK(currency_normalize("JPY", out));
    CHECK(!currency_normalize("", out));
    CHECK(!currency_normalize("US", out));
    CHECK(!currency_normalize("USDD", out));
    CHECK(!currency_normalize("ABC", out));
    CHECK(!currency_normalize("XAU", out)); /* gold is not a payment currency */
    CHECK(!currency_normalize("XXX", out));
    CHECK(!currency_normalize("U D", out));
    CHECK(!currency_normalize("ÜSD", out));
    for (size_t i = 1; i < currency_count(); i++)
        CHECK(strcmp(currency_at(i - 1), currency_at(i)) < 0);
}

/* The migration's currencies table lists exactly the codes of currency.c. */
static void test_currency_matches_migration(void)
{
    FILE *f = fopen(SOURCE_ROOT "/svc-payments/migrations/001_payments.sql", "r");
    CHECK(f != NULL);
    if (!f)
        return;
    static char sql[65536];
    size_t n = fread(sql, 1, sizeof sql - 1, f);
    fclose(f);
    sql[n] = '\0';
    const char *start = strstr(sql, "INSERT INTO currencies");
    CHECK(start != NULL);
    if (!start)
        return;
    const char *end = strchr(start, ';');
    size_t found = 0;
    for (const char *p = start; p && p < end; p = strchr(p + 1, '(')) {
        if (p[0] == '(' && p[1] == '\'' && p[5] == '\'') {
            char code[4] = {p[2], p[3], p[4], 0};
            char out[4];
            if (!currency_normalize(code, out))
                printf("  %s is in the migration, not in currency.c\n", code);
            CHECK(currency_normalize(code, out));
            found++;
        }
    }
    CHECK_INT(found, currency_count());
}

static void test_state_machine(void)
{
    int allowed = 0;
    for (int a = 0; a < PAY_STATUS_COUNT; a++)
        for (int b = 0; b < PAY_STATUS_COUNT; b++)
            allowed += state_allowed((pay_status)a, (pay_status)b);
    CHECK_INT(allowed, 6);
    CHECK(state_allowed(PAY_PENDING, PAY_PROCESSING));
    CHECK(state_allowed(PAY_PENDING, PAY_CANCELLED));
    CHECK(state_allowed(PAY_PENDING, PAY_FAILED));
    CHECK(state_allowed(PAY_PROCESSING, PAY_SUCCEEDED));
    CHECK(state_allowed(PAY_PROCESSING, PAY_FAILED));
    CHECK(state_allowed(PAY_SUCCEEDED, PAY_REFUNDED));
    CHECK(!state_allowed(PAY_PENDING, PAY_SUCCEEDED));
    CHECK(!state_allowed(PAY_PROCESSING, PAY_CANCELLED));
    CHECK(!state_allowed(PAY_CANCELLED, PAY_PENDING));
    CHECK(!state_allowed(PAY_REFUNDED, PAY_SUCCEEDED));
    CHECK(!state_allowed(PAY_PENDING, PAY_PENDING));
    CHECK_INT(state_parse("cancelled"), PAY_CANCELLED);
    CHECK_INT(state_parse("canceled"), -1);
    CHECK_INT(state_parse("PENDING"), -1);
    CHECK_STR(state_sources_literal(PAY_FAILED), "{pending,processing}");
    CHECK_STR(state_sources_literal(PAY_REFUNDED), "{succeeded}");
    CHECK_STR(state_sources_literal(PAY_PENDING), "{}");
    /* (is_admin, is_owner, to): the owner may only cancel, an admin anything, nobody else
     * (an org_admin on a member's payment) anything */
    CHECK(state_caller_may(0, 1, PAY_CANCELLED));
    CHECK(!state_caller_may(0, 1, PAY_PROCESSING));
    CHECK(!state_caller_may(0, 1, PAY_REFUNDED));
    CHECK(!state_caller_may(0, 0, PAY_CANCELLED));
    CHECK(!state_caller_may(0, 0, PAY_PROCESSING));
    CHECK(state_caller_may(1, 0, PAY_REFUNDED));
    CHECK(state_caller_may(1, 0, PAY_CANCELLED));
    CHECK(state_caller_may(1, 1, PAY_PROCESSING));
}

static void sign(const char *secret, const char *t, const char *body, char hex[65])
{
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "%s.%s", t, body);
    uint8_t mac[32];
    crypto_hmac_sha256(secret, strlen(secret), buf, (size_t)n, mac);
    crypto_hex(mac, 32, hex);
}

static void test_webhook_signature(void)
{
    char *secrets[] = {"whsec_new", "whsec_old"};
    const char *body =
        "{ \"type\":\"payment.succeeded\",\n\t\"id\" : \"evt_1\", \"data\":{\"reference\":\"x\"}}";
    size_t len = strlen(body);
    char good[65], old[65], other[65], h[512];
    sign("whsec_new", "1700000000", body, good);
    sign("whsec_old", "1700000000", body, old);
    sign("whsec_unknown", "1700000000", body, other);

    snprintf(h, sizeof h, "t=1700000000,v1=%s", good);
    CHECK(webhook_verify(h, body, len, secrets, 2, 1700000000, 300));
    CHECK(webhook_verify(h, body, len, secrets, 2, 1700000300, 300));
    CHECK(!webhook_verify(h, body, len, secrets, 2, 1700000301, 300));     /* stale */
    CHECK(!webhook_verify(h, body, len, secrets, 2, 1699999000, 300));     /* from the future */
    CHECK(!webhook_verify(h, body, len - 1, secrets, 2, 1700000000, 300)); /* body changed */
    CHECK(!webhook_verify(h, body, len, secrets + 1, 1, 1700000000, 300)); /* wrong secret */
    /* rotation: the old secret signs, any configured secret may match */
    snprintf(h, sizeof h, "t=1700000000,v1=%s", old);
    CHECK(webhook_verify(h, body, len, secrets, 2, 1700000000, 300));
    /* two v1: one bad, one good, in either order */
    snprintf(h, sizeof h, "t=1700000000,v1=%s,v1=%s", other, good);
    CHECK(webhook_verify(h, body, len, secrets, 2, 1700000000, 300));
    snprintf(h, sizeof h, "t=1700000000, v1=%s , v0=abc, v1=%s", good, other);
    CHECK(webhook_verify(h, body, len, secrets, 2, 1700000000, 300));
    snprintf(h, sizeof h, "t=1700000000,v1=%s", other);
    CHECK(!webhook_verify(h, body, len, secrets, 2, 1700000000, 300));
    /* uppercase hex is the same signature */
    char upper[65];
    for (int i = 0; i < 65; i++)
        upper[i] = (char)(good[i] >= 'a' && good[i] <= 'f' ? good[i] - 32 : good[i]);
    snprintf(h, sizeof h, "t=1700000000,v1=%s", upper);
    CHECK(webhook_verify(h, body, len, secrets, 2, 1700000000, 300));
    /* malformed headers */
    CHECK(!webhook_verify(NULL, body, len, secrets, 2, 1700000000, 300));
    CHECK(!webhook_verify("", body, len, secrets, 2, 1700000000, 300));
    snprintf(h, sizeof h, "v1=%s", good);
    CHECK(!webhook_verify(h, body, len, secrets, 2, 1700000000, 300));
    CHECK(!webhook_verify("t=1700000000", body, len, secrets, 2, 1700000000, 300));
    snprintf(h, sizeof h, "t=1700000000,t=1700000000,v1=%s", good);
    CHECK(!webhook_verify(h, body, len, secrets, 2, 1700000000, 300));
    snprintf(h, sizeof h, "t=17000x0000,v1=%s", good);
    CHECK(!webhook_verify(h, body, len, secrets, 2, 1700000000, 300));
    snprintf(h, sizeof h, "t=1700000000,v1=%.63s", good);
    CHECK(!webhook_verify(h, body, len, secrets, 2, 1700000000, 300));
    /* the timestamp is signed as sent */
    char lead[65];
    sign("whsec_new", "01700000000", body, lead);
    snprintf(h, sizeof h, "t=01700000000,v1=%s", lead);
    CHECK(webhook_verify(h, body, len, secrets, 2, 1700000000, 300));
    snprintf(h, sizeof h, "t=01700000000,v1=%s", good);
    CHECK(!webhook_verify(h, body, len, secrets, 2, 1700000000, 300));
}

static int valid(const char *json)
{
    json_t *body = json_loads(json, 0, NULL);
    if (!body)
        return -2;
    payment_input in;
    char err[160];
    int rc = payments_validate(body, &in, err, sizeof err);
    json_decref(in.metadata);
    json_decref(body);
    return rc;
}

static void test_validation(void)
{
    CHECK_INT(valid("{\"amount\":1,\"currency\":\"usd\"}"), 0);
    CHECK_INT(
        valid("{\"amount\":99999999,\"currency\":\"EUR\",\"description\":null,\"metadata\":null}"),
        0);
    /* bodies payments_validate refuses */
    static const char *const refused[] = {
        "{\"amount\":0,\"currency\":\"usd\"}",
        "{\"amount\":-5,\"currency\":\"usd\"}",
        "{\"amount\":100000000,\"currency\":\"usd\"}",
        "{\"amount\":10.0,\"currency\":\"usd\"}",
        "{\"amount\":1e3,\"currency\":\"usd\"}",
        "{\"amount\":\"10\",\"currency\":\"usd\"}",
        "{\"amount\":true,\"currency\":\"usd\"}",
        "{\"currency\":\"usd\"}",
        "{\"amount\":1,\"currency\":\"usx\"}",
        "{\"amount\":1,\"currency\":840}",
        "{\"amount\":1}",
        "{\"amount\":1,\"currency\":\"usd\",\"extra\":1}",
        "[1]",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        CHECK_INT(valid(refused[i]), -1);

    char buf[20000];
    /* description: 1000 characters (2-byte ones) pass, 1001 fail */
    char *p = buf + sprintf(buf, "{\"amount\":1,\"currency\":\"usd\",\"description\":\"");
    for (int i = 0; i < 1000; i++)
        p += sprintf(p, "\xc3\xa9");
    strcpy(p, "\"}");
    CHECK_INT(valid(buf), 0);
    strcpy(p, "x\"}");
    CHECK_INT(valid(buf), -1);
    CHECK_INT(valid("{\"amount\":1,\"currency\":\"usd\",\"description\":5}"), -1);

    CHECK_INT(valid("{\"amount\":1,\"currency\":\"usd\",\"metadata\":{\"order\":\"42\"}}"), 0);
    CHECK_INT(valid("{\"amount\":1,\"currency\":\"usd\",\"metadata\":{\"a\":{\"b\":\"c\"}}}"), -1);
    CHECK_INT(valid("{\"amount\":1,\"currency\":\"usd\",\"metadata\":{\"a\":1}}"), -1);
    CHECK_INT(valid("{\"amount\":1,\"currency\":\"usd\",\"metadata\":{\"a\":[\"x\"]}}"), -1);
    CHECK_INT(valid("{\"amount\":1,\"currency\":\"usd\",\"metadata\":[]}"), -1);
    CHECK_INT(valid("{\"amount\":1,\"currency\":\"usd\",\"metadata\":{\"\":\"x\"}}"), -1);
    CHECK_INT(valid("{\"amount\":1,\"currency\":\"usd\",\"metadata\":"
                    "{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":\"x\"}}"),
              -1);
    /* 16 keys x (4 + 500) bytes = 8064 pass; 17 keys = 8568 fail */
    for (int keys = 16; keys <= 17; keys++) {
        p = buf + sprintf(buf, "{\"amount\":1,\"currency\":\"usd\",\"metadata\":{");
        for (int k = 0; k < keys; k++) {
            p += sprintf(p, "%s\"k%03d\":\"", k ? "," : "", k);
            memset(p, 'v', 500);
            p += 500;
            *p++ = '"';
        }
        strcpy(p, "}}");
        CHECK_INT(valid(buf), keys == 16 ? 0 : -1);
    }
}

static void test_reference(void)
{
    char a[29], b[29];
    payments_new_reference(a);
    payments_new_reference(b);
    CHECK_INT(strlen(a), 28);
    CHECK(strncmp(a, "pay_", 4) == 0);
    CHECK(strcmp(a, b) != 0);
    for (int i = 4; i < 28; i++)
        CHECK((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'z') ||
              (a[i] >= 'A' && a[i] <= 'Z'));
}

static void test_fingerprint(void)
{
    json_t *x = json_loads("{\"amount\": 100, \"currency\": \"usd\"}", 0, NULL);
    json_t *y = json_loads("{\"currency\":\"usd\",\n \"amount\":100}", 0, NULL);
    json_t *z = json_loads("{\"currency\":\"usd\",\"amount\":101}", 0, NULL);
    idem_claim *a = idem_claim_new("u1", "k", x);
    idem_claim *b = idem_claim_new("u1", "k", y);
    idem_claim *c = idem_claim_new("u1", "k", z);
    CHECK_STR(a->fingerprint, b->fingerprint);
    CHECK(strcmp(a->fingerprint, c->fingerprint) != 0);
    CHECK(strncmp(a->fingerprint, "\\x", 2) == 0);
    CHECK(strcmp(a->lock_id, b->lock_id) != 0);
    idem_claim_free(a);
    idem_claim_free(b);
    idem_claim_free(c);
    json_decref(x);
    json_decref(y);
    json_decref(z);
    CHECK(idem_key_valid("order-42"));
    CHECK(!idem_key_valid(""));
    CHECK(!idem_key_valid("a\tb"));
    char longkey[300];
    memset(longkey, 'k', 256);
    longkey[256] = '\0';
    CHECK(!idem_key_valid(longkey));
    longkey[255] = '\0';
    CHECK(idem_key_valid(longkey));
}

int main(void)
{
    test_suite = "payments";
    crypto_init();
    RUN(test_currency);
    RUN(test_currency_matches_migration);
    RUN(test_state_machine);
    RUN(test_webhook_signature);
    RUN(test_validation);
    RUN(test_reference);
    RUN(test_fingerprint);
    return TEST_EXIT();
}
