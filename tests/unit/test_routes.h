/* test_routes.h: the route tables the test programs share, registered in one place: the API's
 * shape (payments and documents) that test_router checks and fuzz_router fuzzes, and the echo
 * routes of the test servers (tests/integration/echo_server, tests/fuzz/fuzz_http_server). */
#ifndef TESTS_TEST_ROUTES_H
#define TESTS_TEST_ROUTES_H

#include <stddef.h>

#include "router.h"

/* The payments and documents routes: every one calls any, but the webhook calls webhook. */
static inline void test_api_routes(router *r, http_req_fn any, http_req_fn webhook)
{
    router_add(r, "GET", "/", any, 0);
    router_add(r, "GET", "/payments", any, 0);
    router_add(r, "POST", "/payments", any, 0);
    router_add(r, "GET", "/payments/{reference}", any, 0);
    router_add(r, "PATCH", "/payments/{reference}/status", any, 0);
    router_add(r, "POST", "/payments/webhook", webhook, 0);
    router_add(r, "GET", "/payments/{reference}/events/{event}", any, 0);
    router_add(r, "DELETE", "/documents/{id}", any, 0);
    router_add(r, "HEAD", "/documents/{id}", any, 0);
    router_add_stream(r, "POST", "/documents", any);
}

/* The handlers of a test server's echo routes, in this order. */
typedef struct test_echo_handlers {
    http_req_fn echo; /* POST /echo, and POST /small limited to small_max bytes */
    size_t small_max;
    http_req_fn json;   /* POST /json */
    http_req_fn slow;   /* GET /slow */
    http_req_fn big;    /* GET /big */
    http_req_fn refuse; /* POST /refuse, streamed: refused before the body is read */
    http_req_fn item;   /* GET /items/{id} */
} test_echo_handlers;

static inline void test_echo_routes(router *r, const test_echo_handlers *h)
{
    router_add(r, "POST", "/echo", h->echo, 0);
    router_add(r, "POST", "/small", h->echo, h->small_max);
    router_add(r, "POST", "/json", h->json, 0);
    router_add(r, "GET", "/slow", h->slow, 0);
    router_add(r, "GET", "/big", h->big, 0);
    router_add_stream(r, "POST", "/refuse", h->refuse);
    router_add(r, "GET", "/items/{id}", h->item, 0);
}

#endif
