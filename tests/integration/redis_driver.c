/* redis_driver: drives common/redis.c on a libuv loop for tests/integration/test_redis.py.
 * Reads one command per line on stdin, writes one JSON object per line on stdout (log lines
 * of the library are JSON too; ours carry "ev"). Arguments and string replies are hex, so
 * any byte (NUL included) goes through.
 *
 *   new NAME [host=H] [port=P] [password=S] [connect_ms=N] [cmd_ms=N] [backoff_ms=N]
 *       a client from redis_opts_default (REDIS_HOST, REDIS_PORT, REDIS_PASSWORD(_FILE)),
 *       then the overrides given
 *   cmd NAME ID TIMEOUT HEXARG...   redis_command_argv ("-") or _argv_timeout (ms)
 *   cmdfree NAME ID HEXARG...       redis_command_argv whose callback calls redis_free
 *   setfmt NAME ID KEY HEXVALUE     redis_command(r, .., "SET %s %b", KEY, value, len)
 *   connected NAME                  {"ev":"connected","value":0|1}
 *   wait NAME MS                    waits until connected or MS elapsed
 *   free NAME                       redis_free
 *   quit (or end of input)          frees every client, lets the loop end, exits
 *
 * Every answer: {"ev":"reply","id":ID,"status":"ok|down|timeout","ms":F,"sync":B,"reply":R}
 * where sync tells that the callback ran before redis_command returned, and R is null (nil),
 * an integer, {"s":HEX} (bulk), {"status":TEXT}, {"err":TEXT} or a list. A second answer for
 * one command prints {"ev":"dup","id":ID} and the exit status is 1. */
#include "crypto.h"
#include "log.h"
#include "redis.h"
#include "xalloc.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MAX_CLIENTS 8
#define MAX_ARGS    64

typedef struct {
    char name[32];
    redis *r;
} drv_client;

typedef struct {
    long id;
    uint64_t t0;
    int answers;
    int free_slot; /* >= 0: the callback frees clients[free_slot] */
} drv_rec;

static uv_loop_t *loop;
static uv_pipe_t in;
static int in_open;
static char linebuf[1 << 20];
static size_t linelen;
static drv_client clients[MAX_CLIENTS];
static drv_rec *recs;
static size_t nrecs, caprecs;
static int in_command, dups;

static void drv_print(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(o);
    if (!s)
        abort();
    printf("%s\n", s);
    fflush(stdout);
    free(s);
}

/* Decodes hex in place; returns the length or -1. */
static long unhex(char *s)
{
    size_t n = strlen(s);
    if (n % 2 || crypto_unhex(s, n, (uint8_t *)s, n / 2) != 0)
        return -1;
    return (long)(n / 2);
}

static json_t *hex_json(const char *p, size_t n)
{
    char *h = xmalloc(2 * n + 1);
    crypto_hex(p, n, h);
    json_t *o = json_pack("{s:s}", "s", h);
    free(h);
    return o;
}

static json_t *reply_json(const redisReply *rep)
{
    if (!rep)
        return json_null();
    switch (rep->type) {
    case REDIS_REPLY_STRING: return hex_json(rep->str, rep->len);
    case REDIS_REPLY_STATUS: return json_pack("{s:s%}", "status", rep->str, rep->len);
    case REDIS_REPLY_ERROR: return json_pack("{s:s%}", "err", rep->str, rep->len);
    case REDIS_REPLY_INTEGER: return json_integer(rep->integer);
    case REDIS_REPLY_ARRAY: {
        json_t *a = json_array();
        for (size_t i = 0; i < rep->elements; i++)
            json_array_append_new(a, reply_json(rep->element[i]));
        return a;
    }
    default: return json_null();
    }
}

static void drv_reply(redis_status st, redisReply *reply, void *ud)
{
    drv_rec *rec = &recs[(uintptr_t)ud];
    if (rec->answers++) {
        dups++;
        drv_print(json_pack("{s:s,s:I}", "ev", "dup", "id", (json_int_t)rec->id));
        return;
    }
    const char *names[] = {"ok", "down", "timeout"};
    drv_print(json_pack("{s:s,s:I,s:s,s:f,s:b,s:o}", "ev", "reply", "id", (json_int_t)rec->id,
                        "status", names[st], "ms", (double)(uv_hrtime() - rec->t0) / 1e6, "sync",
                        in_command, "reply", reply_json(reply)));
    int slot = rec->free_slot;
    if (slot >= 0 && clients[slot].r) {
        /* redis_free from inside a hiredis reply callback. */
        redis *r = clients[slot].r;
        clients[slot].r = NULL;
        redis_free(r);
        drv_print(json_pack("{s:s,s:s}", "ev", "freed", "name", clients[slot].name));
    }
}

static void *drv_new_rec(long id)
{
    if (nrecs == caprecs) {
        caprecs = caprecs ? caprecs * 2 : 64;
        recs = realloc(recs, caprecs * sizeof *recs);
        if (!recs)
            abort();
    }
    recs[nrecs] = (drv_rec){.id = id, .t0 = uv_hrtime(), .answers = 0, .free_slot = -1};
    return (void *)(uintptr_t)nrecs++;
}

static drv_client *drv_find(const char *name, int create)
{
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (clients[i].r && strcmp(clients[i].name, name) == 0)
            return &clients[i];
    if (!create)
        return NULL;
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (!clients[i].r) {
            snprintf(clients[i].name, sizeof clients[i].name, "%s", name);
            return &clients[i];
        }
    }
    return NULL;
}

static void drv_error(const char *msg, const char *arg)
{
    drv_print(json_pack("{s:s,s:s,s:s}", "ev", "error", "msg", msg, "arg", arg ? arg : ""));
}

/* ---- wait NAME MS ---- */
typedef struct {
    uv_timer_t t;
    char name[32];
    uint64_t t0, deadline;
} drv_wait;

static void drv_wait_closed(uv_handle_t *h)
{
    free(h->data);
}

static void drv_wait_tick(uv_timer_t *t)
{
    drv_wait *w = t->data;
    drv_client *c = drv_find(w->name, 0);
    int conn = c && redis_connected(c->r);
    uint64_t now = uv_hrtime();
    if (!conn && now < w->deadline && in_open)
        return;
    uv_timer_stop(t);
    drv_print(json_pack("{s:s,s:s,s:b,s:f}", "ev", "wait", "name", w->name, "connected", conn, "ms",
                        (double)(now - w->t0) / 1e6));
    uv_close((uv_handle_t *)t, drv_wait_closed);
}

static void drv_quit(void)
{
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (clients[i].r) {
            redis_free(clients[i].r);
            clients[i].r = NULL;
        }
    }
    if (in_open) {
        in_open = 0;
        uv_close((uv_handle_t *)&in, NULL);
    }
}

static void drv_line(char *line)
{
    char *argv[MAX_ARGS + 4];
    int argc = 0;
    for (char *tok = strtok(line, " \t\r"); tok && argc < MAX_ARGS + 4; tok = strtok(NULL, " \t\r"))
        argv[argc++] = tok;
    if (argc == 0)
        return;
    const char *op = argv[0];

    if (strcmp(op, "quit") == 0) {
        drv_quit();
        return;
    }
    if (argc < 2) {
        drv_error("missing client name", op);
        return;
    }
    if (strcmp(op, "new") == 0) {
        drv_client *c = drv_find(argv[1], 1);
        if (!c || c->r) {
            drv_error("no free slot or name in use", argv[1]);
            return;
        }
        redis_opts o;
        redis_opts_default(&o);
        for (int i = 2; i < argc; i++) {
            char *eq = strchr(argv[i], '=');
            if (!eq)
                continue;
            *eq = 0;
            const char *k = argv[i], *v = eq + 1;
            if (strcmp(k, "host") == 0)
                o.host = v;
            else if (strcmp(k, "port") == 0)
                o.port = atoi(v);
            else if (strcmp(k, "password") == 0)
                o.password = v[0] ? v : NULL;
            else if (strcmp(k, "connect_ms") == 0)
                o.connect_timeout_ms = (unsigned)atoi(v);
            else if (strcmp(k, "cmd_ms") == 0)
                o.command_timeout_ms = (unsigned)atoi(v);
            else if (strcmp(k, "backoff_ms") == 0)
                o.backoff_max_ms = (unsigned)atoi(v);
        }
        c->r = redis_new(loop, &o);
        drv_print(json_pack("{s:s,s:s,s:b}", "ev", "new", "name", argv[1], "ok", c->r != NULL));
        return;
    }
    drv_client *c = drv_find(argv[1], 0);
    if (!c) {
        drv_error("no such client", argv[1]);
        return;
    }
    int is_cmdfree = strcmp(op, "cmdfree") == 0;
    if ((strcmp(op, "cmd") == 0 && argc >= 5) || (is_cmdfree && argc >= 4)) {
        long id = atol(argv[2]);
        const char *args[MAX_ARGS];
        size_t lens[MAX_ARGS];
        int n = 0;
        for (int i = is_cmdfree ? 3 : 4; i < argc && n < MAX_ARGS; i++, n++) {
            long len = unhex(argv[i]);
            if (len < 0) {
                drv_error("bad hex", argv[i]);
                return;
            }
            args[n] = argv[i];
            lens[n] = (size_t)len;
        }
        void *ud = drv_new_rec(id);
        if (is_cmdfree)
            recs[(uintptr_t)ud].free_slot = (int)(c - clients);
        in_command = 1;
        if (is_cmdfree || strcmp(argv[3], "-") == 0)
            redis_command_argv(c->r, drv_reply, ud, n, args, lens);
        else
            redis_command_argv_timeout(c->r, (unsigned)atoi(argv[3]), drv_reply, ud, n, args, lens);
        in_command = 0;
    } else if (strcmp(op, "setfmt") == 0 && argc == 5) {
        long len = unhex(argv[4]);
        if (len < 0) {
            drv_error("bad hex", argv[4]);
            return;
        }
        void *ud = drv_new_rec(atol(argv[2]));
        in_command = 1;
        redis_command(c->r, drv_reply, ud, "SET %s %b", argv[3], argv[4], (size_t)len);
        in_command = 0;
    } else if (strcmp(op, "connected") == 0) {
        drv_print(json_pack("{s:s,s:s,s:b}", "ev", "connected", "name", c->name, "value",
                            redis_connected(c->r)));
    } else if (strcmp(op, "wait") == 0 && argc == 3) {
        drv_wait *w = calloc(1, sizeof *w);
        if (!w)
            abort();
        snprintf(w->name, sizeof w->name, "%s", c->name);
        w->t0 = uv_hrtime();
        w->deadline = w->t0 + (uint64_t)atol(argv[2]) * 1000000u;
        uv_timer_init(loop, &w->t);
        w->t.data = w;
        uv_timer_start(&w->t, drv_wait_tick, 0, 10);
    } else if (strcmp(op, "free") == 0) {
        redis_free(c->r);
        c->r = NULL;
        drv_print(json_pack("{s:s,s:s}", "ev", "freed", "name", argv[1]));
    } else {
        drv_error("bad command", op);
    }
}

static void drv_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    static char chunk[65536];
    *buf = uv_buf_init(chunk, sizeof chunk);
}

static void drv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)s;
    if (n < 0) {
        drv_quit();
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        char ch = buf->base[i];
        if (ch == '\n') {
            linebuf[linelen] = 0;
            linelen = 0;
            drv_line(linebuf);
            if (!in_open)
                return;
        } else if (linelen + 1 < sizeof linebuf) {
            linebuf[linelen++] = ch;
        }
    }
}

int main(void)
{
    log_init("redis_driver");
    loop = uv_default_loop();
    uv_pipe_init(loop, &in, 0);
    if (uv_pipe_open(&in, 0) != 0) {
        fprintf(stderr, "redis_driver: stdin must be a pipe\n");
        return 2;
    }
    in_open = 1;
    uv_read_start((uv_stream_t *)&in, drv_alloc, drv_read);
    uv_run(loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(loop);
    drv_print(json_pack("{s:s,s:i,s:i}", "ev", "bye", "dups", dups, "loop_close", rc));
    free(recs);
    return dups || rc ? 1 : 0;
}
