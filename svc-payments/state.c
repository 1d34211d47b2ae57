/* state: the payment state machine (see state.h) and the statement applying a transition. */
#include "state.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

static const char *const state_names[PAY_STATUS_COUNT] = {
    [PAY_PENDING] = "pending", [PAY_PROCESSING] = "processing", [PAY_SUCCEEDED] = "succeeded",
    [PAY_FAILED] = "failed",   [PAY_CANCELLED] = "cancelled",   [PAY_REFUNDED] = "refunded",
};

/* state_moves[from][to]: the machine. */
static const unsigned char state_moves[PAY_STATUS_COUNT][PAY_STATUS_COUNT] = {
    [PAY_PENDING] = {[PAY_PROCESSING] = 1, [PAY_CANCELLED] = 1, [PAY_FAILED] = 1},
    [PAY_PROCESSING] = {[PAY_SUCCEEDED] = 1, [PAY_FAILED] = 1},
    [PAY_SUCCEEDED] = {[PAY_REFUNDED] = 1},
};

int state_parse(const char *name)
{
    for (int i = 0; i < PAY_STATUS_COUNT; i++)
        if (strcmp(name, state_names[i]) == 0)
            return i;
    return -1;
}

const char *state_name(pay_status s)
{
    return (unsigned)s < PAY_STATUS_COUNT ? state_names[s] : "unknown";
}

int state_allowed(pay_status from, pay_status to)
{
    if ((unsigned)from >= PAY_STATUS_COUNT || (unsigned)to >= PAY_STATUS_COUNT)
        return 0;
    return state_moves[from][to];
}

int state_caller_may(int is_admin, int is_owner, pay_status to)
{
    return is_admin || (is_owner && to == PAY_CANCELLED);
}

const char *state_sources_literal(pay_status to)
{
    static char lits[PAY_STATUS_COUNT][96];
    if ((unsigned)to >= PAY_STATUS_COUNT)
        return "{}";
    char *out = lits[to];
    size_t n = 0;
    out[n++] = '{';
    for (int from = 0; from < PAY_STATUS_COUNT; from++) {
        if (!state_moves[from][to])
            continue;
        if (n > 1)
            out[n++] = ',';
        size_t l = strlen(state_names[from]);
        memcpy(out + n, state_names[from], l);
        n += l;
    }
    out[n++] = '}';
    out[n] = '\0';
    return out;
}

/* $1 reference, $2 scope, $3 scope id, $4 new status, $5 allowed sources, $6 reason,
 * $7 source. The row lock (FOR UPDATE) makes a concurrent transition wait and then see the
 * status it left; the UPDATE's condition on the status is checked on that latest version. */
#define STATE_SQL_API                                                                              \
    "WITH p AS (SELECT id, status FROM payments WHERE reference = $1 AND CASE $2::text "           \
    "  WHEN 'all' THEN true WHEN 'org' THEN org_id = $3 ELSE user_id = $3 END FOR UPDATE), "       \
    "u AS (UPDATE payments SET status = $4, updated_at = greatest(now(), created_at) "             \
    "  WHERE id = (SELECT id FROM p) AND status = ANY($5::text[]) RETURNING id, status), "         \
    "e AS (INSERT INTO payment_events (payment_id, status, reason, source) "                       \
    "  SELECT id, status, $6, $7 FROM u RETURNING id) "                                            \
    "SELECT (SELECT count(*) FROM p) AS found, 1 AS fresh, (SELECT count(*) FROM e) AS applied, "  \
    "  coalesce((SELECT status FROM u), (SELECT status FROM p)) AS current"

/* Webhook: $1 reference, $2 new status, $3 allowed sources, $4 event id, $5 event type. The
 * event id is inserted first in the same statement; a duplicate (even a concurrent one: the
 * insert waits for the other transaction) changes nothing. */
#define STATE_SQL_WEBHOOK                                                                          \
    "WITH p AS (SELECT id, status FROM payments WHERE reference = $1 FOR UPDATE), "                \
    "w AS (INSERT INTO webhook_events (event_id, type, payment_id) SELECT $4, $5, id FROM p "      \
    "  ON CONFLICT (event_id) DO NOTHING RETURNING payment_id), "                                  \
    "u AS (UPDATE payments SET status = $2, updated_at = greatest(now(), created_at) "             \
    "  WHERE id = (SELECT payment_id FROM w) AND status = ANY($3::text[]) RETURNING id, status), " \
    "e AS (INSERT INTO payment_events (payment_id, status, reason, source) "                       \
    "  SELECT id, status, NULL, 'webhook' FROM u RETURNING id) "                                   \
    "SELECT (SELECT count(*) FROM p) AS found, (SELECT count(*) FROM w) AS fresh, "                \
    "  (SELECT count(*) FROM e) AS applied, "                                                      \
    "  coalesce((SELECT status FROM u), (SELECT status FROM p)) AS current"

typedef struct state_call {
    state_apply_fn cb;
    void *ud;
} state_call;

static void state_apply_done(pg_status st, PGresult *res, void *ud)
{
    state_call *call = ud;
    state_result r = STATE_NOT_FOUND;
    const char *current = NULL;
    if (st == PG_OK && PQntuples(res) == 1) {
        current = pg_get(res, 0, "current");
        if (strcmp(pg_get(res, 0, "found"), "0") == 0)
            r = STATE_NOT_FOUND;
        else if (strcmp(pg_get(res, 0, "fresh"), "0") == 0)
            r = STATE_DUPLICATE;
        else if (strcmp(pg_get(res, 0, "applied"), "0") == 0)
            r = STATE_REFUSED;
        else
            r = STATE_APPLIED;
    }
    call->cb(st, res, r, current, call->ud);
    free(call);
}

void state_apply(pg_pool *pg, const char *reference, const state_scope *scope, pay_status to,
                 const char *reason, const char *source, const char *webhook_event_id,
                 const char *webhook_type, state_apply_fn cb, void *ud)
{
    state_call *call = xmalloc(sizeof *call);
    call->cb = cb;
    call->ud = ud;
    if (webhook_event_id) {
        const char *params[5] = {reference, state_name(to), state_sources_literal(to),
                                 webhook_event_id, webhook_type};
        pg_query(pg, STATE_SQL_WEBHOOK, 5, params, state_apply_done, call);
        return;
    }
    const char *params[7] = {reference,
                             scope->scope,
                             scope->id ? scope->id : "",
                             state_name(to),
                             state_sources_literal(to),
                             reason,
                             source};
    pg_query(pg, STATE_SQL_API, 7, params, state_apply_done, call);
}
