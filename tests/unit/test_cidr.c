/* test_cidr: common/cidr: parsing network lists (IPv4, IPv6, blanks, errors) and matching
 * addresses, IPv4-mapped IPv6 peers included. */
#include <stdlib.h>

#include "cidr.h"
#include "test.h"

static void default_trusted_proxies(void)
{
    char err[128] = "";
    cidr_list *l = cidr_list_parse("127.0.0.0/8,::1/128", err, sizeof(err));
    CHECK(l != NULL);
    CHECK_INT(cidr_list_count(l), 2);
    CHECK_INT(cidr_list_match(l, "127.0.0.1"), 1);
    CHECK_INT(cidr_list_match(l, "127.255.3.4"), 1);
    CHECK_INT(cidr_list_match(l, "::1"), 1);
    CHECK_INT(cidr_list_match(l, "::ffff:127.0.0.1"), 1); /* dual-stack socket */
    CHECK_INT(cidr_list_match(l, "128.0.0.1"), 0);
    CHECK_INT(cidr_list_match(l, "10.0.0.1"), 0);
    CHECK_INT(cidr_list_match(l, "::2"), 0);
    CHECK_INT(cidr_list_match(l, "::ffff:10.0.0.1"), 0);
    cidr_list_free(l);
}

static void prefix_boundaries(void)
{
    cidr_list *l = cidr_list_parse(" 10.0.0.0/8 , 172.16.0.0/12,192.168.1.128/25 ,fd00::/8,"
                                   "2001:db8:0:10::/61",
                                   NULL, 0);
    CHECK(l != NULL);
    CHECK_INT(cidr_list_count(l), 5);
    CHECK_INT(cidr_list_match(l, "10.255.255.255"), 1);
    CHECK_INT(cidr_list_match(l, "11.0.0.0"), 0);
    CHECK_INT(cidr_list_match(l, "172.31.255.1"), 1); /* /12: 172.16-172.31 */
    CHECK_INT(cidr_list_match(l, "172.32.0.1"), 0);
    CHECK_INT(cidr_list_match(l, "172.15.0.1"), 0);
    CHECK_INT(cidr_list_match(l, "192.168.1.128"), 1); /* /25: .128-.255 */
    CHECK_INT(cidr_list_match(l, "192.168.1.127"), 0);
    CHECK_INT(cidr_list_match(l, "fd12:3456::1"), 1);
    CHECK_INT(cidr_list_match(l, "fe80::1"), 0);
    CHECK_INT(cidr_list_match(l, "2001:db8:0:17:ffff::1"), 1); /* /61: ..:10 to ..:17 */
    CHECK_INT(cidr_list_match(l, "2001:db8:0:18::1"), 0);
    cidr_list_free(l);
}

static void single_hosts_and_everything(void)
{
    cidr_list *l = cidr_list_parse("192.0.2.7,2001:db8::7", NULL, 0);
    CHECK(l != NULL);
    CHECK_INT(cidr_list_match(l, "192.0.2.7"), 1);
    CHECK_INT(cidr_list_match(l, "192.0.2.8"), 0);
    CHECK_INT(cidr_list_match(l, "2001:db8::7"), 1);
    CHECK_INT(cidr_list_match(l, "2001:db8::8"), 0);
    cidr_list_free(l);
    l = cidr_list_parse("0.0.0.0/0", NULL, 0);
    CHECK_INT(cidr_list_match(l, "203.0.113.9"), 1);
    CHECK_INT(cidr_list_match(l, "2001:db8::1"), 0); /* IPv4 networks hold IPv4 only */
    cidr_list_free(l);
    l = cidr_list_parse("::/0", NULL, 0);
    CHECK_INT(cidr_list_match(l, "2001:db8::1"), 1);
    cidr_list_free(l);
}

static void empty_list_trusts_nobody(void)
{
    cidr_list *l = cidr_list_parse("", NULL, 0);
    CHECK(l != NULL);
    CHECK_INT(cidr_list_count(l), 0);
    CHECK_INT(cidr_list_match(l, "127.0.0.1"), 0);
    cidr_list_free(l);
    l = cidr_list_parse(" , ,", NULL, 0);
    CHECK(l != NULL);
    CHECK_INT(cidr_list_count(l), 0);
    cidr_list_free(l);
    CHECK_INT(cidr_list_match(NULL, "127.0.0.1"), 0);
}

static void malformed_items_refused(void)
{
    const char *bad[] = {"10.0.0.0/33",  "::/129",       "10.0.0.0/",       "10.0.0.0/-1",
                         "10.0.0.0/8x",  "10.0.0/8",     "300.0.0.1",       "localhost",
                         "10.1.2.3/8",   "fe80::1/8",    "127.0.0.1,bogus", "10.0.0.01",
                         "fe80::1%eth0", "10.0.0.0/0008"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[128] = "";
        cidr_list *l = cidr_list_parse(bad[i], err, sizeof(err));
        if (l) {
            printf("  accepted \"%s\"\n", bad[i]);
            cidr_list_free(l);
        }
        CHECK(l == NULL);
        CHECK(err[0] != '\0');
    }
    char err[128] = "";
    CHECK(cidr_list_parse("127.0.0.0/8, 10.1.2.3/8", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "10.1.2.3/8") != NULL);
}

static void addresses_that_are_not(void)
{
    cidr_list *l = cidr_list_parse("0.0.0.0/0,::/0", NULL, 0);
    uint8_t a[16];
    CHECK_INT(cidr_list_match(l, ""), 0);
    CHECK_INT(cidr_list_match(l, "not an ip"), 0);
    CHECK_INT(cidr_list_match(l, "1.2.3.4 "), 0);
    CHECK_INT(cidr_list_match(l, NULL), 0);
    CHECK_INT(cidr_parse_addr("192.0.2.1", a), 0);
    CHECK_INT(a[10], 0xff);
    CHECK_INT(a[12], 192);
    CHECK_INT(a[15], 1);
    CHECK_INT(cidr_parse_addr("1.2.3.4, 5.6.7.8", a), -1);
    cidr_list_free(l);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        TEST_CASE(default_trusted_proxies),     TEST_CASE(prefix_boundaries),
        TEST_CASE(single_hosts_and_everything), TEST_CASE(empty_list_trusts_nobody),
        TEST_CASE(malformed_items_refused),     TEST_CASE(addresses_that_are_not)};
    return test_main("cidr", cases, argc, argv);
}
