/* redis: hiredis async client on libuv with what hiredis 0.14 lacks: the host name resolved
 * before connecting, a connect timeout, reconnect with backoff, a per-command timeout, and
 * commands that fail at once (REDIS_ST_DOWN) while disconnected. */
#ifndef COMMON_REDIS_H
#define COMMON_REDIS_H

#include <stddef.h>
#include <uv.h>
#include <hiredis/hiredis.h>

typedef enum {
    REDIS_ST_OK =
        0, /* (hiredis owns REDIS_OK) reply set (it may be an error reply: check reply->type) */
    REDIS_ST_DOWN,    /* not connected, or the connection broke */
    REDIS_ST_TIMEOUT, /* no answer within command_timeout_ms */
} redis_status;

typedef struct redis redis;

typedef struct redis_opts {
    const char *host;            /* REDIS_HOST or 127.0.0.1 */
    int port;                    /* REDIS_PORT or 6379 */
    const char *password;        /* REDIS_PASSWORD(_FILE), NULL: none */
    unsigned connect_timeout_ms; /* 2000 */
    unsigned command_timeout_ms; /* 2000 (a blocking command passes its own, see below) */
    unsigned backoff_max_ms;     /* reconnect backoff cap: 5000, starting at 100 */
} redis_opts;

void redis_opts_default(redis_opts *o);

/* reply is valid only during the callback. */
typedef void (*redis_fn)(redis_status st, redisReply *reply, void *ud);

redis *redis_new(uv_loop_t *loop, const redis_opts *opts); /* starts connecting */
void redis_free(redis *r);                                 /* pending commands get REDIS_ST_DOWN */
int redis_connected(const redis *r);

/* Sends a command (printf-like format of hiredis: %s %b %d ...). cb may be NULL. */
void redis_command(redis *r, redis_fn cb, void *ud, const char *fmt, ...);
void redis_command_argv(redis *r, redis_fn cb, void *ud, int argc, const char **argv,
                        const size_t *argvlen);
/* For blocking commands (XREADGROUP BLOCK): the timeout for this one command. Use a redis
 * of its own for them. */
void redis_command_argv_timeout(redis *r, unsigned timeout_ms, redis_fn cb, void *ud, int argc,
                                const char **argv, const size_t *argvlen);

#endif
