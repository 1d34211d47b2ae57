/* test_router: the router's decisions (router_lookup): matching whole segments, parameters
 * and their decoding, literal-over-parameter precedence, 404, 405 with Allow, HEAD -> GET. */
#include <stdlib.h>

#include "router.h"
#include "test.h"
#include "test_routes.h"

static void h_any(http_req *req)
{
    (void)req;
}
static void h_other(http_req *req)
{
    (void)req;
}

static router *make(void)
{
    router *r = router_new();
    test_api_routes(r, h_any, h_other);
    return r;
}

static void matches_literals_and_root(void)
{
    router *r = make();
    router_match m;
    CHECK_INT(router_lookup(r, "GET", "/", &m), 200);
    CHECK_STR(m.pattern, "/");
    CHECK_INT(router_lookup(r, "GET", "/payments", &m), 200);
    CHECK_STR(m.pattern, "/payments");
    CHECK_INT(m.nparams, 0);
    CHECK_INT(router_lookup(r, "POST", "/documents", &m), 200);
    /* whole segments only */
    CHECK_INT(router_lookup(r, "GET", "/payment", &m), 404);
    CHECK_INT(router_lookup(r, "GET", "/paymentsX", &m), 404);
    CHECK_INT(router_lookup(r, "GET", "/payments/", &m), 404); /* empty parameter */
    CHECK_INT(router_lookup(r, "GET", "//payments", &m), 404);
    CHECK_INT(router_lookup(r, "GET", "", &m), 404);
    CHECK_INT(router_lookup(r, "GET", "payments", &m), 404);
    /* literals are compared raw: an encoded literal is another path */
    CHECK_INT(router_lookup(r, "GET", "/p%61yments", &m), 404);
    router_free(r);
}

static void params_are_decoded(void)
{
    router *r = make();
    router_match m;
    CHECK_INT(router_lookup(r, "GET", "/payments/pay_123", &m), 200);
    CHECK_STR(m.pattern, "/payments/{reference}");
    CHECK_INT(m.nparams, 1);
    CHECK_STR(m.names[0], "reference");
    CHECK_STR(m.values[0], "pay_123");
    router_match_free(&m);

    CHECK_INT(router_lookup(r, "GET", "/payments/a%20b%C3%A9+c", &m), 200);
    CHECK_STR(m.values[0], "a b\xc3\xa9+c");
    router_match_free(&m);

    CHECK_INT(router_lookup(r, "GET", "/payments/p1/events/e%2d2", &m), 200);
    CHECK_INT(m.nparams, 2);
    CHECK_STR(m.names[0], "reference");
    CHECK_STR(m.values[0], "p1");
    CHECK_STR(m.names[1], "event");
    CHECK_STR(m.values[1], "e-2");
    router_match_free(&m);
    router_free(r);
}

static void bad_params_are_404(void)
{
    router *r = make();
    router_match m;
    CHECK_INT(router_lookup(r, "GET", "/payments/a%2Fb", &m), 404); /* decoded '/' */
    CHECK_INT(router_lookup(r, "GET", "/payments/a%2fb", &m), 404);
    CHECK_INT(router_lookup(r, "GET", "/payments/a%00b", &m), 404); /* decoded NUL */
    CHECK_INT(router_lookup(r, "GET", "/payments/%E9", &m), 404);   /* not UTF-8 */
    CHECK_INT(router_lookup(r, "GET", "/payments/ok%C3", &m), 404);
    CHECK_INT(router_lookup(r, "GET", "/payments/%ED%A0%80", &m), 404);
    CHECK_INT(router_lookup(r, "GET", "/payments/a%zzb", &m), 404); /* malformed */
    CHECK_INT(router_lookup(r, "GET", "/payments/a%4", &m), 404);
    CHECK_INT(router_lookup(r, "GET", "/payments/%", &m), 404);
    CHECK_INT(m.nparams, 0);
    CHECK_INT(router_lookup(r, "GET", "/payments/x/y", &m), 404); /* too many segments */
    router_free(r);
}

static void literal_beats_parameter(void)
{
    router *r = make();
    router_match m;
    /* POST /payments/webhook is the literal route even though {reference} was added first */
    CHECK_INT(router_lookup(r, "POST", "/payments/webhook", &m), 200);
    CHECK_STR(m.pattern, "/payments/webhook");
    CHECK_INT(m.nparams, 0);
    /* GET of the same path goes to the parameter route */
    CHECK_INT(router_lookup(r, "GET", "/payments/webhook", &m), 200);
    CHECK_STR(m.pattern, "/payments/{reference}");
    CHECK_STR(m.values[0], "webhook");
    router_match_free(&m);
    router_free(r);
}

static void method_not_allowed_lists_allow(void)
{
    router *r = make();
    router_match m;
    CHECK_INT(router_lookup(r, "DELETE", "/payments", &m), 405);
    CHECK_STR(m.allow, "GET, HEAD, POST");
    CHECK_INT(router_lookup(r, "GET", "/payments/p1/status", &m), 405);
    CHECK_STR(m.allow, "PATCH");
    /* a path known through a parameter route and a literal one */
    CHECK_INT(router_lookup(r, "PUT", "/payments/webhook", &m), 405);
    CHECK_STR(m.allow, "GET, HEAD, POST");
    /* an explicit HEAD route is listed once */
    CHECK_INT(router_lookup(r, "GET", "/documents/d1", &m), 405);
    CHECK_STR(m.allow, "DELETE, HEAD");
    /* methods are case-sensitive tokens */
    CHECK_INT(router_lookup(r, "get", "/payments", &m), 405);
    router_free(r);
}

static void head_falls_back_to_get(void)
{
    router *r = make();
    router_match m;
    CHECK_INT(router_lookup(r, "HEAD", "/payments/p9", &m), 200);
    CHECK_STR(m.pattern, "/payments/{reference}");
    CHECK_STR(m.values[0], "p9");
    router_match_free(&m);
    CHECK_INT(router_lookup(r, "HEAD", "/documents/d1", &m), 200);
    CHECK_STR(m.pattern, "/documents/{id}");
    router_match_free(&m);
    CHECK_INT(router_lookup(r, "HEAD", "/payments/p1/status", &m), 405);
    router_free(r);
}

static void h_caller(http_req *req, const auth_identity *who)
{
    (void)req;
    (void)who;
}

/* A route declares that it needs a caller; HEAD inherits it from GET, and a route added
 * without router_add_auth never needs one. */
static void auth_routes_need_a_caller(void)
{
    router *r = router_new();
    router_add(r, "GET", "/files", h_any, 0);
    router_add_auth(r, "POST", "/files", h_caller, 1024);
    router_add_auth(r, "GET", "/files/{id}", h_caller, 0);
    router_add_auth_stream(r, "PUT", "/files/{id}", h_caller);
    router_add_service(r, "POST", "/internal/files/{id}", h_caller, 0);
    router_match m;
    CHECK_INT(router_lookup(r, "POST", "/internal/files/f2", &m), 200);
    CHECK_INT(m.needs_caller, 1); /* a service */
    router_match_free(&m);
    CHECK_INT(router_lookup(r, "GET", "/files", &m), 200);
    CHECK_INT(m.needs_caller, 0);
    CHECK_INT(router_lookup(r, "POST", "/files", &m), 200);
    CHECK_INT(m.needs_caller, 1);
    CHECK_INT(router_lookup(r, "HEAD", "/files/f1", &m), 200);
    CHECK_INT(m.needs_caller, 1);
    CHECK_STR(m.values[0], "f1");
    router_match_free(&m);
    CHECK_INT(router_lookup(r, "PUT", "/files/f1", &m), 200);
    CHECK_INT(m.needs_caller, 1);
    router_match_free(&m);
    CHECK_INT(router_lookup(r, "DELETE", "/files/f1", &m), 405);
    CHECK_STR(m.allow, "GET, HEAD, PUT");
    CHECK_INT(m.needs_caller, 0);
    router_free(r);
}

static void empty_router(void)
{
    router *r = router_new();
    router_match m;
    CHECK_INT(router_lookup(r, "GET", "/", &m), 404);
    router_free(r);
    router_free(NULL);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {TEST_CASE(matches_literals_and_root),
                                      TEST_CASE(params_are_decoded),
                                      TEST_CASE(bad_params_are_404),
                                      TEST_CASE(literal_beats_parameter),
                                      TEST_CASE(method_not_allowed_lists_allow),
                                      TEST_CASE(head_falls_back_to_get),
                                      TEST_CASE(auth_routes_need_a_caller),
                                      TEST_CASE(empty_router)};
    return test_main("router", cases, argc, argv);
}
