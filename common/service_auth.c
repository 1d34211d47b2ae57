/* service_auth: svc-auth as the authority of a service (service_use_auth in service.h): the
 * upstream to it, the auth_client on that upstream, and what the router and /health take from
 * them. */
#include "auth_client.h"
#include "service.h"

static int service_auth_up(void *ud)
{
    service *s = ud;
    unsigned healthy, total;
    upstream_counts(s->auth_upstream, &healthy, &total);
    return healthy > 0;
}

int service_use_auth(service *s, const char *auth_url, int service_calls)
{
    upstream_opts uo;
    upstream_opts_default(&uo);
    s->auth_upstream = upstream_new(s->loop, s->client, "auth", auth_url, &uo);
    if (!s->auth_upstream)
        return -1;
    auth_client_opts ao;
    auth_client_opts_default(&ao);
    ao.service = s->name;
    s->auth = auth_client_new(s->loop, s->auth_upstream, &ao);
    if (!s->auth) {
        upstream_free(s->auth_upstream);
        s->auth_upstream = NULL;
        return -1;
    }
    router_use_auth_client(s->router, s->auth);
    if (service_calls)
        router_use_service_auth(s->router, s->auth);
    service_add_check(s, "auth", service_auth_up, s);
    return 0;
}

void service_auth_teardown(service *s)
{
    if (s->auth) {
        router_use_auth_client(s->router, NULL); /* now answered 503 */
        router_use_service_auth(s->router, NULL);
        auth_client_free(s->auth);
        s->auth = NULL;
    }
    if (s->auth_upstream) {
        upstream_free(s->auth_upstream);
        s->auth_upstream = NULL;
    }
}
