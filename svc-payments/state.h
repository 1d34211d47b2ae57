/* state: the payment state machine in one place, and the one statement that applies a
 * transition together with its event row (used by PATCH .../status and the webhook).
 *
 *   pending    -> processing | cancelled | failed
 *   processing -> succeeded | failed
 *   succeeded  -> refunded
 *
 * Who may move: an admin may make any allowed move; the payment's owner may only cancel it;
 * nobody else (an org_admin sees the organization's payments but moves only their own). */
#ifndef PAYMENTS_STATE_H
#define PAYMENTS_STATE_H

#include "pg_pool.h"

typedef enum {
    PAY_PENDING = 0,
    PAY_PROCESSING,
    PAY_SUCCEEDED,
    PAY_FAILED,
    PAY_CANCELLED,
    PAY_REFUNDED,
    PAY_STATUS_COUNT,
} pay_status;

/* -1 when name is not a status. */
int state_parse(const char *name);
const char *state_name(pay_status s);
/* 1 when the machine allows from -> to. */
int state_allowed(pay_status from, pay_status to);
/* 1 when a caller may request a move to `to` (is_admin: the caller has the admin role;
 * is_owner: the payment is the caller's). */
int state_caller_may(int is_admin, int is_owner, pay_status to);
/* The statuses from which `to` can be reached, as a PostgreSQL array literal ("{a,b}");
 * "{}" when none. */
const char *state_sources_literal(pay_status to);

/* The outcome of state_apply. */
typedef enum {
    STATE_APPLIED = 0, /* the status changed and the event row was written */
    STATE_REFUSED,     /* the machine forbids it from the current status (current set) */
    STATE_NOT_FOUND,   /* no such payment (or not visible) */
    STATE_DUPLICATE,   /* webhook: this event id was seen before; nothing changed */
} state_result;

/* Visibility of the payment for the caller: scope "all" (admin), "org" (org_id must match)
 * or "own" (user_id must match); scope_id is the org or user id (unused for "all"). */
typedef struct state_scope {
    const char *scope;
    const char *id;
} state_scope;

typedef void (*state_apply_fn)(pg_status st, const PGresult *res, state_result r,
                               const char *current, void *ud);

/* Moves the payment `reference` to `to` with its event (reason may be NULL, source "api" or
 * "webhook") in one statement: a conditional UPDATE on the current status, so two concurrent
 * transitions apply once. When webhook_event_id is not NULL the event id is recorded in the
 * same statement and, when seen before, nothing changes (STATE_DUPLICATE). current is the
 * status after the attempt (valid during the callback; NULL when not found). */
void state_apply(pg_pool *pg, const char *reference, const state_scope *scope, pay_status to,
                 const char *reason, const char *source, const char *webhook_event_id,
                 const char *webhook_type, state_apply_fn cb, void *ud);

#endif
