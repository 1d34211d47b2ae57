/* payments: the payment resource: POST /payments (with idempotency keys), GET /payments,
 * GET /payments/{reference} (with its events) and PATCH /payments/{reference}/status.
 * Every request is authenticated first (caller.c); what a caller sees is its scope: all
 * payments for an admin, its organization's for an org_admin, its own otherwise. */
#include "payments.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caller.h"
#include "crypto.h"
#include "currency.h"
#include "idempotency.h"
#include "log.h"
#include "metrics.h"
#include "state.h"
#include "query.h"
#include "xalloc.h"

#define PAYMENTS_MAX_BODY           (64 * 1024)
#define PAYMENTS_AMOUNT_MAX         99999999LL
#define PAYMENTS_DESCRIPTION_MAX    1000
#define PAYMENTS_REASON_MAX         500
#define PAYMENTS_METADATA_KEYS      50
#define PAYMENTS_METADATA_KEY_MAX   40
#define PAYMENTS_METADATA_VALUE_MAX 500
#define PAYMENTS_METADATA_BYTES     8192
#define PAYMENTS_LIST_DEFAULT       20
#define PAYMENTS_LIST_MAX           100

#define PAYMENTS_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define PAYMENTS_COLS                                                                              \
    "p.id, p.reference, p.status, p.amount, p.currency, p.description, "                           \
    "p.metadata::text AS metadata, " PAYMENTS_TS("p.created_at") " AS created_at, " PAYMENTS_TS(   \
        "p.updated_at") " AS updated_at"
#define PAYMENTS_EVENTS                                                                            \
    "(SELECT coalesce(json_agg(json_build_object('status', e.status, 'reason', e.reason, "         \
    "'source', e.source, 'at', " PAYMENTS_TS(                                                      \
        "e.at") ") ORDER BY e.id), '[]') "                                                         \
                "FROM payment_events e WHERE e.payment_id = p.id)::text AS events"
#define PAYMENTS_SCOPE_PARAMS                                                                      \
    "CASE $2::text WHEN 'all' THEN true WHEN 'org' THEN p.org_id = $3 ELSE p.user_id = $3 END"

payments_app payments;

/* ---- validation ---- */

static size_t payments_utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

static int payments_fail(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return -1;
}

static int payments_validate_metadata(json_t *m, char *err, size_t errlen)
{
    if (!json_is_object(m))
        return payments_fail(err, errlen, "\"metadata\" must be an object of string values.");
    if (json_object_size(m) > PAYMENTS_METADATA_KEYS)
        return payments_fail(err, errlen, "\"metadata\" holds at most 50 keys.");
    size_t bytes = 0;
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v)
    {
        size_t kc = payments_utf8_chars(k);
        if (kc == 0 || kc > PAYMENTS_METADATA_KEY_MAX)
            return payments_fail(err, errlen, "\"metadata\" keys are 1 to 40 characters.");
        if (!json_is_string(v))
            return payments_fail(err, errlen,
                                 "\"metadata\" is a flat object: every value is a string.");
        if (payments_utf8_chars(json_string_value(v)) > PAYMENTS_METADATA_VALUE_MAX)
            return payments_fail(err, errlen, "\"metadata\" values are at most 500 characters.");
        bytes += strlen(k) + json_string_length(v);
    }
    if (bytes > PAYMENTS_METADATA_BYTES)
        return payments_fail(err, errlen, "\"metadata\" is at most 8192 bytes of keys and values.");
    return 0;
}

int payments_validate(json_t *body, payment_input *in, char *err, size_t errlen)
{
    memset(in, 0, sizeof *in);
    if (!json_is_object(body))
        return payments_fail(err, errlen, "The body must be a JSON object.");
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        if (strcmp(k, "amount") != 0 && strcmp(k, "currency") != 0 &&
            strcmp(k, "description") != 0 && strcmp(k, "metadata") != 0) {
            snprintf(err, errlen, "Unknown field \"%.40s\".", k);
            return -1;
        }
    }
    json_t *amount = json_object_get(body, "amount");
    if (!json_is_integer(amount) || json_integer_value(amount) < 1 ||
        json_integer_value(amount) > PAYMENTS_AMOUNT_MAX)
        return payments_fail(err, errlen,
                             "\"amount\" must be an integer number of minor units from 1 to "
                             "99999999.");
    in->amount = json_integer_value(amount);
    json_t *currency = json_object_get(body, "currency");
    if (!json_is_string(currency) || !currency_normalize(json_string_value(currency), in->currency))
        return payments_fail(err, errlen, "\"currency\" must be an ISO 4217 currency code.");
    json_t *desc = json_object_get(body, "description");
    if (desc && !json_is_null(desc)) {
        if (!json_is_string(desc) ||
            payments_utf8_chars(json_string_value(desc)) > PAYMENTS_DESCRIPTION_MAX)
            return payments_fail(err, errlen,
                                 "\"description\" must be a string of at most 1000 characters.");
        in->description = json_string_value(desc);
    }
    json_t *meta = json_object_get(body, "metadata");
    if (meta && !json_is_null(meta)) {
        if (payments_validate_metadata(meta, err, errlen) != 0)
            return -1;
        in->metadata = json_incref(meta);
    } else {
        in->metadata = json_object();
    }
    return 0;
}

void payments_new_reference(char out[29])
{
    static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    memcpy(out, "pay_", 4);
    size_t n = 0;
    while (n < 24) {
        uint8_t buf[32];
        crypto_random(buf, sizeof buf);
        for (size_t i = 0; i < sizeof buf && n < 24; i++)
            if (buf[i] < 248) /* 248 = 4 * 62: no modulo bias */
                out[4 + n++] = alphabet[buf[i] % 62];
    }
    out[28] = '\0';
}

/* ---- rendering ---- */

/* The payment of row r as the API's JSON object (events added when the column is there). */
static json_t *payments_row_json(const PGresult *res, int r)
{
    json_t *meta = json_loads(pg_get(res, r, "metadata"), 0, NULL);
    const char *desc = pg_get(res, r, "description");
    json_t *o =
        json_pack("{s:s, s:s, s:I, s:s, s:o, s:o, s:s, s:s}", "reference",
                  pg_get(res, r, "reference"), "status", pg_get(res, r, "status"), "amount",
                  (json_int_t)strtoll(pg_get(res, r, "amount"), NULL, 10), "currency",
                  pg_get(res, r, "currency"), "description", desc ? json_string(desc) : json_null(),
                  "metadata", meta ? meta : json_object(), "created_at",
                  pg_get(res, r, "created_at"), "updated_at", pg_get(res, r, "updated_at"));
    const char *events = PQfnumber(res, "events") >= 0 ? pg_get(res, r, "events") : NULL;
    if (events) {
        json_t *ev = json_loads(events, 0, NULL);
        json_object_set_new(o, "events", ev ? ev : json_array());
    }
    return o;
}

/* ---- per-request context ---- */

typedef struct pay_ctx {
    http_req *req;
    const auth_identity *who; /* the router's: valid until the reply */
    json_t *body;
    payment_input in;
    idem_claim *claim;
    pg_tx *tx;
    char reference[64];
    char payment_id[24];
    char *response; /* the rendered 201 body (idempotent create) */
    pay_status to;
    char *reason;
    int limit;
} pay_ctx;

static pay_ctx *pay_ctx_new(http_req *req, const auth_identity *who)
{
    pay_ctx *c = xcalloc(1, sizeof *c);
    c->req = req;
    c->who = who;
    return c;
}

static void pay_ctx_free(pay_ctx *c)
{
    json_decref(c->body);
    json_decref(c->in.metadata);
    idem_claim_free(c->claim);
    free(c->response);
    free(c->reason);
    free(c);
}

/* Replies and frees the context. */
static void pay_reply_json(pay_ctx *c, int status, json_t *body)
{
    http_reply_json(c->req, status, body);
    pay_ctx_free(c);
}

static void pay_reply_error(pay_ctx *c, int status, const char *code, const char *msg)
{
    http_reply_error(c->req, status, code, msg);
    pay_ctx_free(c);
}

static void pay_reply_pg(pay_ctx *c, pg_status st, const PGresult *res)
{
    service_reply_pg_error(c->req, st, res);
    pay_ctx_free(c);
}

/* 1 when the query found the payment; else replies (the database error, or 404) and frees c. */
static int pay_found(pay_ctx *c, pg_status st, const PGresult *res)
{
    if (st != PG_OK)
        pay_reply_pg(c, st, res);
    else if (PQntuples(res) == 0)
        pay_reply_error(c, 404, "not_found", "No such payment.");
    else
        return 1;
    return 0;
}

/* ---- POST /payments ---- */

#define PAYMENTS_SQL_INSERT                                                                        \
    "INSERT INTO payments AS p (reference, user_id, org_id, amount, currency, description, "       \
    "metadata) VALUES ($1, $2, $3, $4::bigint, $5, $6, $7::jsonb) RETURNING " PAYMENTS_COLS

static void payments_insert(pay_ctx *c, pg_tx *tx, pg_query_fn cb)
{
    payments_new_reference(c->reference);
    char amount[24];
    snprintf(amount, sizeof amount, "%lld", c->in.amount);
    char *meta = json_dumps(c->in.metadata, JSON_COMPACT);
    const char *params[7] = {c->reference,   c->who->sub,       c->who->org, amount,
                             c->in.currency, c->in.description, meta};
    if (tx)
        pg_tx_query(tx, PAYMENTS_SQL_INSERT, 7, params, cb, c);
    else
        pg_query(payments.svc.pg, PAYMENTS_SQL_INSERT, 7, params, cb, c);
    free(meta);
}

static void payments_count_created(void)
{
    metric_inc(metrics_counter("payments_created_total", "Payments created.", NULL));
}

static void payments_created(pg_status st, PGresult *res, void *ud)
{
    pay_ctx *c = ud;
    if (st != PG_OK)
        return pay_reply_pg(c, st, res);
    payments_count_created();
    pay_reply_json(c, 201, payments_row_json(res, 0));
}

/* Idempotent create: BEGIN; INSERT; store the answer with the key; COMMIT. */
static void payments_idem_failed(pay_ctx *c, pg_status st, const PGresult *res)
{
    /* the transaction is rolled back by the caller; the key is given back for a retry */
    idem_release(payments.svc.pg, c->claim);
    pay_reply_pg(c, st, res);
}

static void payments_idem_committed(pg_status st, PGresult *res, void *ud)
{
    pay_ctx *c = ud;
    if (st != PG_OK)
        return payments_idem_failed(c, st, res);
    payments_count_created();
    http_reply(c->req, 201, "application/json", c->response, strlen(c->response));
    pay_ctx_free(c);
}

static void payments_idem_stored(pg_status st, PGresult *res, void *ud)
{
    pay_ctx *c = ud;
    pg_tx *tx = c->tx;
    c->tx = NULL;
    if (st != PG_OK) {
        pg_tx_rollback(tx, NULL, NULL);
        return payments_idem_failed(c, st, res);
    }
    if (strcmp(PQcmdTuples(res), "1") != 0) {
        /* our claim expired and another request took the key over: it will answer */
        pg_tx_rollback(tx, NULL, NULL);
        return pay_reply_error(c, 409, "idempotency_key_in_use",
                               "Another request with this Idempotency-Key is in progress.");
    }
    pg_tx_commit(tx, payments_idem_committed, c);
}

static void payments_idem_inserted(pg_status st, PGresult *res, void *ud)
{
    pay_ctx *c = ud;
    if (st != PG_OK) {
        pg_tx_rollback(c->tx, NULL, NULL);
        c->tx = NULL;
        return payments_idem_failed(c, st, res);
    }
    json_t *o = payments_row_json(res, 0);
    c->response = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    snprintf(c->payment_id, sizeof c->payment_id, "%s", pg_get(res, 0, "id"));
    idem_complete(c->tx, c->claim, 201, c->response, c->payment_id, payments_idem_stored, c);
}

static void payments_idem_begun(pg_status st, pg_tx *tx, void *ud)
{
    pay_ctx *c = ud;
    if (st != PG_OK) {
        if (tx)
            pg_tx_rollback(tx, NULL, NULL);
        return payments_idem_failed(c, st, NULL);
    }
    c->tx = tx;
    payments_insert(c, tx, payments_idem_inserted);
}

static void payments_idem_claimed(pg_status st, const PGresult *res, idem_outcome out, int status,
                                  const char *body, void *ud)
{
    pay_ctx *c = ud;
    if (st != PG_OK)
        return pay_reply_pg(c, st, res);
    switch (out) {
    case IDEM_OWNED: pg_begin(payments.svc.pg, payments_idem_begun, c); return;
    case IDEM_REPLAY:
        http_resp_header(c->req, "Idempotent-Replayed", "true");
        http_reply(c->req, status, "application/json", body, strlen(body));
        pay_ctx_free(c);
        return;
    case IDEM_MISMATCH:
        return pay_reply_error(c, 422, "idempotency_key_reused",
                               "This Idempotency-Key was used with another request body.");
    case IDEM_IN_FLIGHT:
        http_resp_header(c->req, "Retry-After", "1");
        return pay_reply_error(c, 409, "idempotency_key_in_use",
                               "A request with this Idempotency-Key is still in progress.");
    }
}

static void payments_create(http_req *req, const auth_identity *who)
{
    pay_ctx *c = pay_ctx_new(req, who);
    c->body = http_req_json(req);
    if (!c->body) { /* answered 400/415 */
        pay_ctx_free(c);
        return;
    }
    char err[160];
    if (payments_validate(c->body, &c->in, err, sizeof err) != 0)
        return pay_reply_error(c, 400, "invalid_request", err);
    const char *key = http_req_header(req, "Idempotency-Key");
    if (!key)
        return payments_insert(c, NULL, payments_created);
    if (!idem_key_valid(key))
        return pay_reply_error(c, 400, "invalid_request",
                               "Idempotency-Key must be 1 to 255 printable ASCII characters.");
    c->claim = idem_claim_new(who->sub, key, c->body);
    idem_claim_run(payments.svc.pg, c->claim, payments.idem_ttl_s, payments.idem_lock_s,
                   payments_idem_claimed, c);
}

/* ---- GET /payments/{reference} ---- */

#define PAYMENTS_SQL_GET                                                                           \
    "SELECT " PAYMENTS_COLS ", " PAYMENTS_EVENTS " FROM payments p "                               \
    "WHERE p.reference = $1 AND " PAYMENTS_SCOPE_PARAMS

static void payments_got(pg_status st, PGresult *res, void *ud)
{
    pay_ctx *c = ud;
    if (!pay_found(c, st, res))
        return;
    pay_reply_json(c, 200, payments_row_json(res, 0));
}

static void payments_fetch(pay_ctx *c, pg_query_fn cb)
{
    const char *params[3] = {c->reference, caller_scope(c->who), caller_scope_id(c->who)};
    pg_query(payments.svc.pg, PAYMENTS_SQL_GET, 3, params, cb, c);
}

static void payments_get(http_req *req, const auth_identity *who)
{
    pay_ctx *c = pay_ctx_new(req, who);
    snprintf(c->reference, sizeof c->reference, "%s", http_req_param(req, "reference"));
    payments_fetch(c, payments_got);
}

/* ---- GET /payments ---- */

static void payments_listed(pg_status st, PGresult *res, void *ud)
{
    pay_ctx *c = ud;
    if (st != PG_OK)
        return pay_reply_pg(c, st, res);
    int n = PQntuples(res);
    int more = n > c->limit;
    json_t *data = json_array();
    for (int r = 0; r < n && r < c->limit; r++)
        json_array_append_new(data, payments_row_json(res, r));
    pay_reply_json(c, 200, json_pack("{s:o, s:b}", "data", data, "has_more", more));
}

static void payments_list_run(pay_ctx *c, const char *before_id)
{
    /* one statement per scope so each uses its index (user_id, id) or (org_id, id) */
    const char *scope = caller_scope(c->who);
    const char *where = strcmp(scope, "all") == 0   ? "$1::text IS NULL"
                        : strcmp(scope, "org") == 0 ? "p.org_id = $1"
                                                    : "p.user_id = $1";
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT " PAYMENTS_COLS " FROM payments p WHERE %s "
             "AND ($2::bigint IS NULL OR p.id < $2::bigint) ORDER BY p.id DESC LIMIT $3::int",
             where);
    char limit[16];
    snprintf(limit, sizeof limit, "%d", c->limit + 1); /* one more tells has_more */
    const char *params[3] = {strcmp(scope, "all") == 0 ? NULL : caller_scope_id(c->who), before_id,
                             limit};
    pg_query(payments.svc.pg, sql, 3, params, payments_listed, c);
}

static void payments_cursor_found(pg_status st, PGresult *res, void *ud)
{
    pay_ctx *c = ud;
    if (st != PG_OK)
        return pay_reply_pg(c, st, res);
    if (PQntuples(res) == 0)
        return pay_reply_error(c, 400, "invalid_request",
                               "\"starting_after\" is not the reference of one of your payments.");
    char id[24];
    snprintf(id, sizeof id, "%s", pg_get(res, 0, "id"));
    payments_list_run(c, id);
}

static void payments_list(http_req *req, const auth_identity *who)
{
    pay_ctx *c = pay_ctx_new(req, who);
    const char *q = http_req_query(req);
    char buf[128];
    c->limit = PAYMENTS_LIST_DEFAULT;
    int has = query_param(q, "limit", buf, sizeof buf);
    if (has != 0) {
        char *end;
        errno = 0;
        long v = has > 0 ? strtol(buf, &end, 10) : 0;
        if (has < 0 || errno || end == buf || *end || v < 1 || v > PAYMENTS_LIST_MAX)
            return pay_reply_error(c, 400, "invalid_request",
                                   "\"limit\" must be an integer from 1 to 100.");
        c->limit = (int)v;
    }
    has = query_param(q, "starting_after", c->reference, sizeof c->reference);
    if (has < 0)
        return pay_reply_error(c, 400, "invalid_request", "\"starting_after\" is malformed.");
    if (has == 0)
        return payments_list_run(c, NULL);
    const char *params[3] = {c->reference, caller_scope(who), caller_scope_id(who)};
    pg_query(payments.svc.pg,
             "SELECT p.id FROM payments p WHERE p.reference = $1 AND " PAYMENTS_SCOPE_PARAMS, 3,
             params, payments_cursor_found, c);
}

/* ---- PATCH /payments/{reference}/status ---- */

static void payments_status_applied(pg_status st, const PGresult *res, state_result r,
                                    const char *current, void *ud)
{
    pay_ctx *c = ud;
    if (st != PG_OK)
        return pay_reply_pg(c, st, res);
    if (r == STATE_NOT_FOUND)
        return pay_reply_error(c, 404, "not_found", "No such payment.");
    if (r != STATE_APPLIED) {
        char msg[160];
        snprintf(msg, sizeof msg, "A %s payment cannot become %s.", current ? current : "?",
                 state_name(c->to));
        return pay_reply_error(c, 409, "invalid_transition", msg);
    }
    char labels[64];
    snprintf(labels, sizeof labels, "status=\"%s\",source=\"api\"", state_name(c->to));
    metric_inc(metrics_counter("payments_transitions_total", "Status changes applied.", labels));
    payments_fetch(c, payments_got);
}

/* Who may make the move (state_caller_may) once the payment is known to be the caller's or
 * not; a refused move is 403. */
static void payments_status_decide(pay_ctx *c, int is_owner)
{
    if (!state_caller_may(caller_is_admin(c->who), is_owner, c->to))
        return pay_reply_error(c, 403, "forbidden_transition",
                               "Only an admin may make this move; the owner of a payment may "
                               "only cancel it.");
    state_scope scope = {caller_scope(c->who), caller_scope_id(c->who)};
    state_apply(payments.svc.pg, c->reference, &scope, c->to, c->reason, "api", NULL, NULL,
                payments_status_applied, c);
}

/* The payment's owner, for a caller who is not an admin: 404 when the payment is not
 * visible (before any 403). */
static void payments_status_owner(pg_status st, PGresult *res, void *ud)
{
    pay_ctx *c = ud;
    if (!pay_found(c, st, res))
        return;
    const char *owner = pg_get(res, 0, "user_id");
    payments_status_decide(c, owner && strcmp(owner, c->who->sub) == 0);
}

static void payments_status(http_req *req, const auth_identity *who)
{
    pay_ctx *c = pay_ctx_new(req, who);
    snprintf(c->reference, sizeof c->reference, "%s", http_req_param(req, "reference"));
    c->body = http_req_json(req);
    if (!c->body) {
        pay_ctx_free(c);
        return;
    }
    const char *status = NULL;
    json_t *reason = NULL;
    json_error_t jerr;
    if (json_unpack_ex(c->body, &jerr, JSON_STRICT, "{s:s, s?o}", "status", &status, "reason",
                       &reason) != 0)
        return pay_reply_error(c, 400, "invalid_request",
                               "The body is {\"status\": string, \"reason\"?: string}.");
    int to = state_parse(status);
    if (to < 0)
        return pay_reply_error(c, 400, "invalid_request",
                               "\"status\" must be one of pending, processing, succeeded, "
                               "failed, cancelled, refunded.");
    c->to = (pay_status)to;
    if (reason && !json_is_null(reason)) {
        if (!json_is_string(reason) ||
            payments_utf8_chars(json_string_value(reason)) > PAYMENTS_REASON_MAX)
            return pay_reply_error(c, 400, "invalid_request",
                                   "\"reason\" must be a string of at most 500 characters.");
        c->reason = xstrdup(json_string_value(reason));
    }
    if (caller_is_admin(who)) /* any move: the owner does not matter */
        return payments_status_decide(c, 0);
    const char *params[3] = {c->reference, caller_scope(who), caller_scope_id(who)};
    pg_query(payments.svc.pg,
             "SELECT p.user_id FROM payments p WHERE p.reference = $1 AND " PAYMENTS_SCOPE_PARAMS,
             3, params, payments_status_owner, c);
}

void payments_routes(router *r)
{
    /* listed in /metrics from the start */
    metrics_counter("payments_created_total", "Payments created.", NULL);
    router_add_auth(r, "POST", "/payments", payments_create, PAYMENTS_MAX_BODY);
    router_add_auth(r, "GET", "/payments", payments_list, 0);
    router_add_auth(r, "GET", "/payments/{reference}", payments_get, 0);
    router_add_auth(r, "PATCH", "/payments/{reference}/status", payments_status, 4096);
}
