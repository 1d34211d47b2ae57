/* test_auth_core: svc-auth's pure parts: stored roles, role bits, the caller handed to
 * router_add_auth handlers, ids and character counts. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "test.h"

static void test_roles(void)
{
    json_t *r = auth_roles("[\"user\",\"org_admin\"]");
    CHECK_INT(json_array_size(r), 2);
    CHECK(auth_roles_has(r, "org_admin"));
    CHECK(!auth_roles_has(r, "admin"));
    CHECK_INT(auth_identity_role_bits(r), AUTH_ROLE_USER | AUTH_ROLE_ORG_ADMIN);
    json_decref(r);
    /* unreadable or not an array: a plain user */
    const char *bad[] = {NULL, "", "{\"a\":1}", "[\"user\"", "\"admin\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = auth_roles(bad[i]);
        CHECK_INT(auth_identity_role_bits(r), AUTH_ROLE_USER);
        json_decref(r);
    }
    /* unknown names and non-strings give no bit */
    r = json_loads("[\"root\", 3, null, \"admin\"]", 0, NULL);
    CHECK_INT(auth_identity_role_bits(r), AUTH_ROLE_ADMIN);
    json_decref(r);
    CHECK_INT(auth_identity_role_bits(NULL), 0);
}

static void test_ident_to_identity(void)
{
    auth_ident id;
    memset(&id, 0, sizeof(id));
    id.kind = AUTH_KIND_TOKEN;
    strcpy(id.sub, "0b6c7c2e-3f0e-4a43-9d1a-5c0d1f5f7a11");
    strcpy(id.sid, "7d1f2a38-2d5e-4b7e-8f7e-0a6a1d3c9b22");
    strcpy(id.org, "org-1");
    strcpy(id.email, "a@example.com");
    id.roles = auth_roles("[\"user\",\"admin\"]");
    id.exp = 1700000000;
    auth_identity who;
    auth_ident_to_identity(&id, &who);
    CHECK_INT(who.kind, AUTH_ID_TOKEN);
    CHECK_STR(who.sub, id.sub);
    CHECK_STR(who.sid, id.sid);
    CHECK_STR(who.org, "org-1");
    CHECK_STR(who.email, "a@example.com");
    CHECK(auth_identity_has_role(&who, AUTH_ROLE_ADMIN));
    CHECK(!auth_identity_has_role(&who, AUTH_ROLE_ORG_ADMIN));
    CHECK_INT(who.exp, 1700000000);
    id.kind = AUTH_KIND_API_KEY;
    auth_ident_to_identity(&id, &who);
    CHECK_INT(who.kind, AUTH_ID_API_KEY);
    json_decref(id.roles);
}

static void test_uuid_and_chars(void)
{
    CHECK(auth_is_uuid("0b6c7c2e-3f0e-4a43-9d1a-5c0d1f5f7a11"));
    CHECK(auth_is_uuid("0B6C7C2E-3F0E-4A43-9D1A-5C0D1F5F7A11"));
    CHECK(!auth_is_uuid("0b6c7c2e-3f0e-4a43-9d1a-5c0d1f5f7a1"));
    CHECK(!auth_is_uuid("0b6c7c2e-3f0e-4a43-9d1a-5c0d1f5f7a111"));
    CHECK(!auth_is_uuid("0b6c7c2e03f0e-4a43-9d1a-5c0d1f5f7a11"));
    CHECK(!auth_is_uuid("zb6c7c2e-3f0e-4a43-9d1a-5c0d1f5f7a11"));
    CHECK(!auth_is_uuid(""));
    CHECK_INT(auth_utf8_chars("abc"), 3);
    CHECK_INT(auth_utf8_chars("\xc3\xa9t\xc3\xa9"), 3);
    CHECK_INT(auth_utf8_chars(""), 0);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {TEST_CASE(test_roles), TEST_CASE(test_ident_to_identity),
                                      TEST_CASE(test_uuid_and_chars)};
    return test_main("auth_core", cases, argc, argv);
}
