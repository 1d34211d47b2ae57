/* demo_svc: a minimal service on common/service.h used by the foundation's integration tests:
 * it proves the PostgreSQL and Redis I/O is non-blocking and fails fast (503) while a server
 * is down, and that the process recovers by itself. Routes:
 *   GET  /db/sleep?s=N   SELECT pg_sleep(N)
 *   GET  /db/now         SELECT now()
 *   POST /db/echo        {"text": "..."} stored in a table and read back (bound parameters)
 *   GET  /cache/incr     INCR demo:counter */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "service.h"

static service svc;

static void demo_sleep_done(pg_status st, PGresult *res, void *ud)
{
    http_req *req = ud;
    if (st != PG_OK)
        return service_reply_pg_error(req, st, res);
    http_reply_json(req, 200, json_pack("{s:b}", "slept", 1));
}

static void demo_sleep(http_req *req)
{
    const char *q = http_req_query(req);
    const char *s = strncmp(q, "s=", 2) == 0 ? q + 2 : "1";
    const char *params[1] = {s};
    pg_query(svc.pg, "SELECT pg_sleep($1::float8)", 1, params, demo_sleep_done, req);
}

/* How a query's first value is answered: {field: value} with this status. */
typedef struct demo_answer {
    int status;
    const char *field;
} demo_answer;

static demo_answer demo_now_answer = {200, "now"}, demo_echo_answer = {201, "text"};

/* The query's first value as the request's demo_answer (its http_req_data) says. */
static void demo_value_done(pg_status st, PGresult *res, void *ud)
{
    http_req *req = ud;
    const demo_answer *a = http_req_data(req);
    if (st != PG_OK)
        return service_reply_pg_error(req, st, res);
    http_reply_json(req, a->status, json_pack("{s:s}", a->field, PQgetvalue(res, 0, 0)));
}

static void demo_now(http_req *req)
{
    http_req_set_data(req, &demo_now_answer);
    pg_query(svc.pg, "SELECT now()::text", 0, NULL, demo_value_done, req);
}

static void demo_echo(http_req *req)
{
    json_t *body = http_req_json(req);
    if (!body)
        return;
    const char *text = NULL;
    json_error_t err;
    if (json_unpack_ex(body, &err, JSON_STRICT, "{s:s}", "text", &text) != 0) {
        http_reply_error(req, 400, "invalid_request", err.text);
        json_decref(body);
        return;
    }
    const char *params[1] = {text};
    http_req_set_data(req, &demo_echo_answer);
    pg_query(
        svc.pg,
        "WITH t AS (INSERT INTO demo_echo(text) VALUES ($1) RETURNING text) SELECT text FROM t", 1,
        params, demo_value_done, req);
    json_decref(body); /* the pool copied the parameters */
}

static void demo_incr_done(redis_status st, redisReply *reply, void *ud)
{
    http_req *req = ud;
    if (st != REDIS_ST_OK)
        return service_reply_redis_error(req, st);
    if (reply->type != REDIS_REPLY_INTEGER)
        return http_reply_error(req, 500, "internal_error", "unexpected reply from Redis");
    http_reply_json(req, 200, json_pack("{s:I}", "counter", (json_int_t)reply->integer));
}

static void demo_incr(http_req *req)
{
    redis_command(svc.redis, demo_incr_done, req, "INCR %s", "demo:counter");
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    if (service_init(&svc, "demo") != 0)
        return 1;
    const char *migrations = getenv("DEMO_MIGRATIONS");
    if (service_use_pg(&svc, migrations) != 0 || service_use_redis(&svc) != 0)
        return 1;
    router_add(svc.router, "GET", "/db/sleep", demo_sleep, 0);
    router_add(svc.router, "GET", "/db/now", demo_now, 0);
    router_add(svc.router, "POST", "/db/echo", demo_echo, 0);
    router_add(svc.router, "GET", "/cache/incr", demo_incr, 0);
    return service_run(&svc);
}
