/* webhook: signature checking and the handler of POST /payments/webhook (see webhook.h).
 * Answers: 400 invalid_signature (bad, stale or missing signature), 400 invalid_json /
 * invalid_request (a signed but malformed event), 404 not_found (unknown reference),
 * 200 {"received":true,"applied":true|false} otherwise; an event id seen before changes
 * nothing and answers 200 with "duplicate":true. */
#include "webhook.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"
#include "log.h"
#include "metrics.h"
#include "payments.h"
#include "state.h"
#include "xalloc.h"

#define WEBHOOK_MAX_BODY (64 * 1024)
#define WEBHOOK_MAX_V1   8

/* Parses "t=..,v1=..,v1=..": items separated by ',', blanks around items ignored, unknown
 * schemes ignored. Returns 0 with *t and up to WEBHOOK_MAX_V1 decoded signatures. */
static int webhook_parse(const char *h, int64_t *t, const char **t_text, size_t *t_len,
                         uint8_t sigs[][32], size_t *nsigs)
{
    int have_t = 0;
    *nsigs = 0;
    const char *p = h;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len > 2 && p[0] == 't' && p[1] == '=') {
            if (have_t || len - 2 > 15)
                return -1;
            int64_t v = 0;
            for (size_t i = 2; i < len; i++) {
                if (p[i] < '0' || p[i] > '9')
                    return -1;
                v = v * 10 + (p[i] - '0');
            }
            *t = v;
            *t_text = p + 2;
            *t_len = len - 2;
            have_t = 1;
        } else if (len > 3 && strncmp(p, "v1=", 3) == 0) {
            if (len - 3 == 64 && *nsigs < WEBHOOK_MAX_V1 &&
                crypto_unhex(p + 3, 64, sigs[*nsigs], 32) == 0)
                (*nsigs)++;
        }
        if (!end)
            break;
        p = end + 1;
    }
    return have_t && *nsigs > 0 ? 0 : -1;
}

int webhook_verify(const char *header, const void *body, size_t len, char *const *secrets,
                   size_t nsecrets, int64_t now, int64_t tolerance_s)
{
    int64_t t = 0;
    const char *t_text = NULL;
    size_t t_len = 0, nsigs = 0;
    uint8_t sigs[WEBHOOK_MAX_V1][32];
    if (!header || webhook_parse(header, &t, &t_text, &t_len, sigs, &nsigs) != 0)
        return 0;
    if (t < now - tolerance_s || t > now + tolerance_s)
        return 0;
    /* the signed payload: the timestamp as sent, ".", the raw body */
    size_t plen = t_len + 1 + len;
    char *payload = xmalloc(plen);
    memcpy(payload, t_text, t_len);
    payload[t_len] = '.';
    memcpy(payload + t_len + 1, body, len);
    int ok = 0;
    for (size_t s = 0; s < nsecrets; s++) {
        uint8_t mac[32];
        crypto_hmac_sha256(secrets[s], strlen(secrets[s]), payload, plen, mac);
        for (size_t i = 0; i < nsigs; i++)
            ok |= crypto_ct_equal(mac, sigs[i], 32);
    }
    free(payload);
    return ok;
}

typedef struct webhook_ctx {
    http_req *req;
    char *event_id;
    char *reference;
    pay_status to;
} webhook_ctx;

static void webhook_applied(pg_status st, const PGresult *res, state_result r, const char *current,
                            void *ud)
{
    webhook_ctx *c = ud;
    http_req *req = c->req;
    (void)current;
    if (st != PG_OK) {
        service_reply_pg_error(req, st, res);
    } else if (r == STATE_NOT_FOUND) {
        http_reply_error(req, 404, "not_found", "No payment has this reference.");
    } else if (r == STATE_DUPLICATE) {
        metric_inc(metrics_counter("payments_webhooks_total", "Webhook events received.",
                                   "result=\"duplicate\""));
        http_reply_json(req, 200,
                        json_pack("{s:b, s:b, s:b}", "received", 1, "applied", 0, "duplicate", 1));
    } else {
        int applied = r == STATE_APPLIED;
        metric_inc(metrics_counter("payments_webhooks_total", "Webhook events received.",
                                   applied ? "result=\"applied\"" : "result=\"refused\""));
        log_emit(LOG_INFO, http_req_id(req),
                 json_pack("{s:s, s:s, s:s, s:b}", "event_id", c->event_id, "reference",
                           c->reference, "status", state_name(c->to), "applied", applied),
                 "webhook event");
        http_reply_json(req, 200, json_pack("{s:b, s:b}", "received", 1, "applied", applied));
    }
    free(c->event_id);
    free(c->reference);
    free(c);
}

static void webhook_body(http_req *req)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    if (!webhook_verify(http_req_header(req, "X-Signature"), body, len, payments.webhook_secrets,
                        payments.nwebhook_secrets, (int64_t)time(NULL),
                        payments.webhook_tolerance_s)) {
        metric_inc(metrics_counter("payments_webhooks_total", "Webhook events received.",
                                   "result=\"invalid_signature\""));
        http_reply_error(req, 400, "invalid_signature",
                         "The X-Signature header does not match the body, or is too old.");
        return;
    }
    json_error_t jerr;
    json_t *ev = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!ev || !json_is_object(ev)) {
        json_decref(ev);
        http_reply_error(req, 400, "invalid_json", "The body is not a JSON object.");
        return;
    }
    const char *id = NULL, *type = NULL, *reference = NULL;
    if (json_unpack_ex(ev, &jerr, 0, "{s:s, s:s, s:{s:s}}", "id", &id, "type", &type, "data",
                       "reference", &reference) != 0 ||
        strlen(id) == 0 || strlen(id) > 255) {
        json_decref(ev);
        http_reply_error(req, 400, "invalid_request",
                         "An event needs a string \"id\" (1 to 255 characters), a \"type\" and "
                         "\"data\": {\"reference\"}.");
        return;
    }
    int to = strncmp(type, "payment.", 8) == 0 ? state_parse(type + 8) : -1;
    if (to != PAY_PROCESSING && to != PAY_SUCCEEDED && to != PAY_FAILED && to != PAY_REFUNDED) {
        json_decref(ev);
        http_reply_error(req, 400, "invalid_request",
                         "\"type\" must be payment.processing, payment.succeeded, "
                         "payment.failed or payment.refunded.");
        return;
    }
    webhook_ctx *c = xcalloc(1, sizeof *c);
    c->req = req;
    c->event_id = xstrdup(id);
    c->reference = xstrdup(reference);
    c->to = (pay_status)to;
    state_apply(payments.svc.pg, c->reference, NULL, c->to, NULL, "webhook", c->event_id, type,
                webhook_applied, c);
    json_decref(ev); /* the pool copied the parameters */
}

void webhook_routes(router *r)
{
    router_add(r, "POST", "/payments/webhook", webhook_body, WEBHOOK_MAX_BODY);
}
