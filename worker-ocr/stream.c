/* stream: the job runner's Redis stream operations (see stream.h). Every command goes on the
 * runner's command connection but the blocking XREADGROUP, which has a connection of its own;
 * each callback updates the runner's state (runner_int.h) and pumps the job loop. */
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xalloc.h"

static int stream_reply_is_error(const redisReply *rep, const char *prefix)
{
    return rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, prefix, strlen(prefix)) == 0;
}

static void stream_log_error(const char *what, redis_status st, const redisReply *rep)
{
    log_emit(LOG_WARN, NULL,
             json_pack("{s:s}", "error",
                       st == REDIS_ST_DOWN                     ? "redis down"
                       : st == REDIS_ST_TIMEOUT                ? "redis timeout"
                       : rep && rep->type == REDIS_REPLY_ERROR ? rep->str
                                                               : "unexpected reply"),
             "%s failed", what);
}

static void stream_group_lost(runner *r);

/* A command on the group failed: a reply saying the group is gone (a restarted Redis) has it
 * created again; another failure is logged (what: the command). */
static void stream_group_cmd_failed(runner *r, const char *what, redis_status st,
                                    const redisReply *rep)
{
    if (stream_reply_is_error(rep, "NOGROUP"))
        stream_group_lost(r);
    else
        stream_log_error(what, st, rep);
}

/* 1 when the reply to a command on the group is an array of at least min elements; else the
 * command failed: *busy (the flag of the work it was part of) is cleared and the failure
 * handled as stream_group_cmd_failed does. */
static int stream_array_reply(runner *r, int *busy, const char *what, redis_status st,
                              const redisReply *rep, size_t min)
{
    if (st == REDIS_ST_OK && rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= min)
        return 1;
    *busy = 0;
    stream_group_cmd_failed(r, what, st, rep);
    return 0;
}

/* An entry of a reply, [id, [name, value, ...]]; a nil field list (deleted from the stream
 * meanwhile) is skipped. */
static rjob *stream_entry_job(runner *r, const redisReply *entry, unsigned deliveries)
{
    if (!entry || entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
        entry->element[0]->type != REDIS_REPLY_STRING ||
        entry->element[1]->type != REDIS_REPLY_ARRAY)
        return NULL;
    const redisReply *f = entry->element[1];
    const char **kv = xcalloc(f->elements ? f->elements : 1, sizeof *kv);
    for (size_t i = 0; i < f->elements; i++)
        kv[i] = f->element[i]->type == REDIS_REPLY_STRING ? f->element[i]->str : "";
    rjob *rj = rjob_new(r, entry->element[0]->str, kv, f->elements, deliveries);
    free(kv);
    return rj;
}

/* ---- acknowledging ---- */

static void stream_acked(redis_status st, redisReply *rep, void *ud)
{
    rjob *rj = ud;
    if (st != REDIS_ST_OK || !rep || rep->type == REDIS_REPLY_ERROR)
        stream_log_error("XACK", st, rep); /* stays pending: done again later (idempotent) */
    rjob_drop(&runner_global, rj);
}

void stream_ack(runner *r, rjob *rj)
{
    const char *argv[] = {"XACK", r->stream, RUNNER_GROUP, rj->j.id};
    redis_command_argv(r->rd, stream_acked, rj, 4, argv, NULL);
}

/* The dead letter and the acknowledgement in one transaction (issued back to back on the one
 * command connection, nothing can come between them). */
void stream_bury(runner *r, rjob *rj)
{
    size_t n = 3 + rj->j.nfields * 2 + 6;
    const char **argv = xcalloc(n, sizeof *argv);
    char deliveries[16];
    snprintf(deliveries, sizeof deliveries, "%u", rj->j.deliveries);
    size_t k = 0;
    argv[k++] = "XADD";
    argv[k++] = r->dead;
    argv[k++] = "*";
    for (size_t i = 0; i < rj->j.nfields * 2; i++)
        argv[k++] = rj->j.fields[i];
    argv[k++] = "id";
    argv[k++] = rj->j.id;
    argv[k++] = "reason";
    argv[k++] = rj->reason;
    argv[k++] = "deliveries";
    argv[k++] = deliveries;
    const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
    const char *ack[] = {"XACK", r->stream, RUNNER_GROUP, rj->j.id};
    redis_command_argv(r->rd, NULL, NULL, 1, multi, NULL);
    redis_command_argv(r->rd, NULL, NULL, (int)k, argv, NULL);
    redis_command_argv(r->rd, NULL, NULL, 4, ack, NULL);
    redis_command_argv(r->rd, stream_acked, rj, 1, exec, NULL);
    free(argv);
    metric_inc(r->m_dead);
    log_emit(LOG_WARN, NULL,
             json_pack("{s:s, s:s, s:s, s:i}", "id", rj->j.id, "doc", rj->j.doc, "reason",
                       rj->reason, "deliveries", (int)rj->j.deliveries),
             "job moved to %s", r->dead);
}

/* ---- the group ---- */

static void stream_group_created(redis_status st, redisReply *rep, void *ud)
{
    runner *r = ud;
    r->group_creating = 0;
    if (st == REDIS_ST_OK && rep &&
        (rep->type == REDIS_REPLY_STATUS || stream_reply_is_error(rep, "BUSYGROUP"))) {
        if (!r->group_ready)
            log_info(NULL, "group " RUNNER_GROUP " of %s ready", r->stream);
        r->group_ready = 1;
        stream_read(r);
        return;
    }
    stream_log_error("XGROUP CREATE", st, rep); /* the tick tries again */
}

void stream_group_create(runner *r)
{
    if (r->group_creating || r->stopping)
        return;
    r->group_creating = 1;
    const char *argv[] = {"XGROUP", "CREATE", r->stream, RUNNER_GROUP, "0", "MKSTREAM"};
    redis_command_argv(r->rd, stream_group_created, r, 6, argv, NULL);
}

static void stream_group_lost(runner *r)
{
    if (r->group_ready)
        log_warn(NULL, "group " RUNNER_GROUP " of %s is gone: creating it again", r->stream);
    r->group_ready = 0;
    stream_group_create(r);
}

/* ---- reading new entries ---- */

static void stream_take_entries(runner *r, const redisReply *entries, unsigned deliveries)
{
    if (!entries || entries->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < entries->elements; i++)
        stream_entry_job(r, entries->element[i], deliveries);
}

static void stream_read_cb(redis_status st, redisReply *rep, void *ud)
{
    runner *r = ud;
    r->reading = 0;
    if (r->stopping)
        return;
    if (st != REDIS_ST_OK || !rep || rep->type == REDIS_REPLY_ERROR) {
        stream_group_cmd_failed(r, "XREADGROUP", st, rep);
        r->read_again_at = uv_now(r->svc.loop) + RUNNER_READ_PAUSE;
        return;
    }
    if (rep->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < rep->elements; i++) {
            const redisReply *s = rep->element[i];
            if (s->type == REDIS_REPLY_ARRAY && s->elements == 2)
                stream_take_entries(r, s->element[1], 1);
        }
    runner_pump(r);
}

void stream_read(runner *r)
{
    uint64_t now = uv_now(r->svc.loop);
    if (r->reading || r->stopping || !r->group_ready || now < r->read_again_at ||
        now < r->storage_wait_until)
        return;
    unsigned n = runner_slots_free(r);
    if (n == 0)
        return;
    char count[16], block[24];
    snprintf(count, sizeof count, "%u", n);
    snprintf(block, sizeof block, "%lu", r->block_ms);
    const char *argv[] = {"XREADGROUP", "GROUP", RUNNER_GROUP, r->consumer, "COUNT", count,
                          "BLOCK",      block,   "STREAMS",    r->stream,   ">"};
    r->reading = 1;
    redis_command_argv_timeout(r->rd_read, (unsigned)r->block_ms + 5000, stream_read_cb, r, 11,
                               argv, NULL);
}

/* ---- retries: own pending entries past their backoff ---- */

typedef struct rclaim {
    runner *r;
    unsigned deliveries; /* after this claim */
} rclaim;

static void stream_claimed(redis_status st, redisReply *rep, void *ud)
{
    rclaim *c = ud;
    runner *r = c->r;
    r->claiming--;
    if (st == REDIS_ST_OK && rep && rep->type == REDIS_REPLY_ARRAY && !r->stopping) {
        stream_take_entries(r, rep, c->deliveries);
        if (rep->elements)
            log_emit(LOG_INFO, NULL, json_pack("{s:i}", "deliveries", (int)c->deliveries),
                     "job claimed again");
    } else if (st != REDIS_ST_OK || (rep && rep->type == REDIS_REPLY_ERROR)) {
        stream_group_cmd_failed(r, "XCLAIM", st, rep);
    }
    free(c);
    runner_pump(r);
}

static void stream_claim(runner *r, const char *id, uint64_t min_idle, unsigned deliveries)
{
    char idle[24];
    snprintf(idle, sizeof idle, "%llu", (unsigned long long)min_idle);
    const char *argv[] = {"XCLAIM", r->stream, RUNNER_GROUP, r->consumer, idle, id};
    rclaim *c = xmalloc(sizeof *c);
    c->r = r;
    c->deliveries = deliveries;
    r->claiming++;
    redis_command_argv(r->rd, stream_claimed, c, 6, argv, NULL);
}

static void stream_autoclaim(runner *r);

static void stream_pending_cb(redis_status st, redisReply *rep, void *ud)
{
    runner *r = ud;
    if (!stream_array_reply(r, &r->scanning, "XPENDING", st, rep, 0))
        return;
    for (size_t i = 0; i < rep->elements && !r->stopping; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 4 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        const char *id = e->element[0]->str;
        long long idle = e->element[2]->integer, n = e->element[3]->integer;
        if (runner_in_hand(r, id) || runner_slots_free(r) == 0)
            continue;
        uint64_t need =
            job_backoff_ms(r->retry_base_ms, (unsigned)(n < 1 ? 1 : n), RUNNER_RETRY_CAP_MS);
        if (idle >= 0 && (uint64_t)idle >= need)
            stream_claim(r, id, need, (unsigned)n + 1);
    }
    stream_autoclaim(r);
}

/* ---- dead consumers: XAUTOCLAIM ---- */

typedef struct rcount {
    runner *r;
    char id[JOB_ID_MAX];
    json_t *entry; /* [id, [fields]] kept as strings until the delivery count is known */
} rcount;

static void stream_autoclaim_count(redis_status st, redisReply *rep, void *ud)
{
    rcount *c = ud;
    runner *r = c->r;
    r->claiming--;
    unsigned deliveries = 1;
    if (st == REDIS_ST_OK && rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
        rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements == 4)
        deliveries = (unsigned)rep->element[0]->element[3]->integer;
    if (!r->stopping) {
        json_t *fields = json_array_get(c->entry, 1);
        size_t n = json_array_size(fields);
        const char **kv = xcalloc(n ? n : 1, sizeof *kv);
        for (size_t i = 0; i < n; i++)
            kv[i] = json_string_value(json_array_get(fields, i));
        if (rjob_new(r, c->id, kv, n, deliveries))
            log_emit(LOG_INFO, NULL,
                     json_pack("{s:s, s:i}", "id", c->id, "deliveries", (int)deliveries),
                     "job taken over from another consumer");
        free(kv);
    }
    json_decref(c->entry);
    free(c);
    runner_pump(r);
}

static void stream_autoclaim_cb(redis_status st, redisReply *rep, void *ud)
{
    runner *r = ud;
    if (!stream_array_reply(r, &r->scanning, "XAUTOCLAIM", st, rep, 2))
        return;
    r->scanning = 0;
    if (rep->element[0]->type == REDIS_REPLY_STRING)
        snprintf(r->autoclaim_cursor, sizeof r->autoclaim_cursor, "%s", rep->element[0]->str);
    const redisReply *entries = rep->element[1];
    for (size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY ||
            strlen(e->element[0]->str) >= JOB_ID_MAX || runner_in_hand(r, e->element[0]->str))
            continue;
        rcount *c = xcalloc(1, sizeof *c);
        c->r = r;
        snprintf(c->id, sizeof c->id, "%s", e->element[0]->str);
        json_t *fields = json_array();
        for (size_t k = 0; k < e->element[1]->elements; k++) {
            const redisReply *f = e->element[1]->element[k];
            json_array_append_new(fields, json_stringn(f->type == REDIS_REPLY_STRING ? f->str : "",
                                                       f->type == REDIS_REPLY_STRING ? f->len : 0));
        }
        c->entry = json_pack("[s,o]", c->id, fields);
        r->claiming++;
        const char *argv[] = {"XPENDING", r->stream, RUNNER_GROUP, c->id, c->id, "1"};
        redis_command_argv(r->rd, stream_autoclaim_count, c, 6, argv, NULL);
    }
    /* Redis 7: the third element lists the ids that were pending but deleted from the stream. */
    if (rep->elements >= 3 && rep->element[2]->type == REDIS_REPLY_ARRAY &&
        rep->element[2]->elements) {
        for (size_t i = 0; i < rep->element[2]->elements; i++)
            if (rep->element[2]->element[i]->type == REDIS_REPLY_STRING)
                json_array_append_new(r->lost_ids, json_string(rep->element[2]->element[i]->str));
        log_emit(LOG_WARN, NULL, json_pack("{s:O}", "ids", r->lost_ids),
                 "pending jobs were deleted from the stream");
        runner_post_lost(r);
    }
}

static void stream_autoclaim(runner *r)
{
    unsigned n = runner_slots_free(r);
    if (r->stopping || n == 0) {
        r->scanning = 0;
        return;
    }
    char idle[24], count[16];
    snprintf(idle, sizeof idle, "%llu", (unsigned long long)r->takeover_ms);
    snprintf(count, sizeof count, "%u", n);
    const char *argv[] = {"XAUTOCLAIM", r->stream,           RUNNER_GROUP, r->consumer,
                          idle,         r->autoclaim_cursor, "COUNT",      count};
    redis_command_argv(r->rd, stream_autoclaim_cb, r, 8, argv, NULL);
}

void stream_scan(runner *r)
{
    if (r->scanning || r->stopping || !r->group_ready || runner_slots_free(r) == 0 ||
        uv_now(r->svc.loop) < r->storage_wait_until)
        return;
    r->scanning = 1;
    char idle[24], count[16];
    snprintf(idle, sizeof idle, "%lu", r->retry_base_ms);
    snprintf(count, sizeof count, "%d", RUNNER_SCAN_COUNT);
    const char *argv[] = {"XPENDING", r->stream, RUNNER_GROUP, "IDLE",     idle,
                          "-",        "+",       count,        r->consumer};
    redis_command_argv(r->rd, stream_pending_cb, r, 9, argv, NULL);
}

/* ---- lease renewal of the jobs in hand ---- */

/* Resets the idle time of the entries still pending with this consumer (JUSTID: the
 * delivery count stays), so that no XAUTOCLAIM takes a job that is being worked on. */
static const char STREAM_RENEW_LUA[] =
    "local n = 0\n"
    "for i = 3, #ARGV do\n"
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])\n"
    "  if #p == 1 then\n"
    "    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

static void stream_renewed(redis_status st, redisReply *rep, void *ud)
{
    runner *r = ud;
    r->heartbeating = 0;
    if (st != REDIS_ST_OK || !rep || rep->type == REDIS_REPLY_ERROR)
        stream_log_error("lease renewal", st, rep);
}

void stream_renew(runner *r)
{
    if (r->heartbeating || !r->hand_first)
        return;
    size_t n = 0;
    for (rjob *rj = r->hand_first; rj; rj = rj->next)
        n++;
    const char **argv = xcalloc(n + 6, sizeof *argv);
    size_t k = 0;
    argv[k++] = "EVAL";
    argv[k++] = STREAM_RENEW_LUA;
    argv[k++] = "1";
    argv[k++] = r->stream;
    argv[k++] = RUNNER_GROUP;
    argv[k++] = r->consumer;
    for (rjob *rj = r->hand_first; rj; rj = rj->next)
        argv[k++] = rj->j.id;
    r->heartbeating = 1;
    redis_command_argv(r->rd, stream_renewed, r, (int)k, argv, NULL);
    free(argv);
}

/* ---- trimming: XTRIM MINID below the oldest entry still needed ---- */

/* The value of key in an XINFO reply's [key, value, ...] list when it has this reply type;
 * else NULL. */
static const redisReply *stream_info_field(const redisReply *map, const char *key, int type)
{
    for (size_t i = 0; map->type == REDIS_REPLY_ARRAY && i + 1 < map->elements; i += 2) {
        const redisReply *k = map->element[i], *v = map->element[i + 1];
        if ((k->type == REDIS_REPLY_STRING || k->type == REDIS_REPLY_STATUS) &&
            strcmp(k->str, key) == 0)
            return v->type == type ? v : NULL;
    }
    return NULL;
}

static void stream_trim_summary(redis_status st, redisReply *rep, void *ud);

static void stream_trim_info(redis_status st, redisReply *rep, void *ud)
{
    runner *r = ud;
    if (!stream_array_reply(r, &r->trimming, "XINFO GROUPS", st, rep, 0))
        return;
    /* The last-delivered id, read before the pending summary: an entry delivered in between
     * is after it and so kept. */
    char *last = NULL;
    for (size_t g = 0; g < rep->elements && !last; g++) {
        const redisReply *grp = rep->element[g];
        const redisReply *name = stream_info_field(grp, "name", REDIS_REPLY_STRING);
        const redisReply *ld = stream_info_field(grp, "last-delivered-id", REDIS_REPLY_STRING);
        if (name && ld && strcmp(name->str, RUNNER_GROUP) == 0)
            last = xstrdup(ld->str);
    }
    if (!last) {
        r->trimming = 0;
        return;
    }
    const char *argv[] = {"XPENDING", r->stream, RUNNER_GROUP};
    redis_command_argv(r->rd, stream_trim_summary, last, 3, argv, NULL);
}

static void stream_trimmed(redis_status st, redisReply *rep, void *ud)
{
    runner *r = ud;
    r->trimming = 0;
    if (st != REDIS_ST_OK || !rep || rep->type == REDIS_REPLY_ERROR)
        stream_log_error("XTRIM", st, rep);
}

static void stream_trim_summary(redis_status st, redisReply *rep, void *ud)
{
    runner *r = &runner_global;
    char *last = ud, minid[JOB_ID_MAX];
    int ok = 0;
    if (st == REDIS_ST_OK && rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2) {
        if (rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[0]->integer > 0 &&
            rep->element[1]->type == REDIS_REPLY_STRING)
            ok = snprintf(minid, sizeof minid, "%s", rep->element[1]->str) < (int)sizeof minid;
        else if (rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[0]->integer == 0)
            ok = job_id_next(last, minid, sizeof minid) == 0;
    }
    free(last);
    if (!ok || r->stopping) {
        r->trimming = 0;
        return;
    }
    const char *argv[] = {"XTRIM", r->stream, "MINID", minid};
    redis_command_argv(r->rd, stream_trimmed, r, 4, argv, NULL);
}

/* Consumers without pending entries that have not been seen for 10 times the take-over idle
 * time are dead workers' names (hostname-pid): deleted so that the group does not collect
 * them forever. A live worker touches its consumer at every read and lease renewal; were it
 * deleted anyway, its next read creates it again, and no entry is lost (none was pending). */
static void stream_consumers_cb(redis_status st, redisReply *rep, void *ud)
{
    runner *r = ud;
    if (st != REDIS_ST_OK || !rep || rep->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t c = 0; c < rep->elements; c++) {
        const redisReply *cons = rep->element[c];
        const redisReply *nr = stream_info_field(cons, "name", REDIS_REPLY_STRING);
        const redisReply *pr = stream_info_field(cons, "pending", REDIS_REPLY_INTEGER);
        const redisReply *ir = stream_info_field(cons, "idle", REDIS_REPLY_INTEGER);
        const char *name = nr ? nr->str : NULL;
        long long pending = pr ? pr->integer : -1, idle = ir ? ir->integer : -1;
        if (!name || strcmp(name, r->consumer) == 0 || pending != 0 || idle < 0 ||
            (uint64_t)idle < r->takeover_ms * 10)
            continue;
        const char *argv[] = {"XGROUP", "DELCONSUMER", r->stream, RUNNER_GROUP, name};
        redis_command_argv(r->rd, NULL, NULL, 5, argv, NULL);
        log_emit(LOG_INFO, NULL,
                 json_pack("{s:s, s:I}", "consumer", name, "idle_ms", (json_int_t)idle),
                 "idle consumer without pending jobs removed");
    }
}

void stream_trim(runner *r)
{
    if (!r->trimming && r->group_ready) {
        const char *argv[] = {"XINFO", "CONSUMERS", r->stream, RUNNER_GROUP};
        redis_command_argv(r->rd, stream_consumers_cb, r, 4, argv, NULL);
    }
    if (r->trimming || !r->group_ready)
        return;
    r->trimming = 1;
    const char *argv[] = {"XINFO", "GROUPS", r->stream};
    redis_command_argv(r->rd, stream_trim_info, r, 3, argv, NULL);
}
