/* http_syntax: HTTP/1.1 character rules (see http_syntax.h). */
#include "http_syntax.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

/* tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" /
 * "~" / DIGIT / ALPHA, as a table (every header name of every request is checked). */
#define T1(c) [c] = 1
static const unsigned char tchar_table[256] = {
    T1('!'), T1('#'), T1('$'), T1('%'), T1('&'), T1('\''), T1('*'), T1('+'), T1('-'), T1('.'),
    T1('^'), T1('_'), T1('`'), T1('|'), T1('~'), T1('0'),  T1('1'), T1('2'), T1('3'), T1('4'),
    T1('5'), T1('6'), T1('7'), T1('8'), T1('9'), T1('a'),  T1('b'), T1('c'), T1('d'), T1('e'),
    T1('f'), T1('g'), T1('h'), T1('i'), T1('j'), T1('k'),  T1('l'), T1('m'), T1('n'), T1('o'),
    T1('p'), T1('q'), T1('r'), T1('s'), T1('t'), T1('u'),  T1('v'), T1('w'), T1('x'), T1('y'),
    T1('z'), T1('A'), T1('B'), T1('C'), T1('D'), T1('E'),  T1('F'), T1('G'), T1('H'), T1('I'),
    T1('J'), T1('K'), T1('L'), T1('M'), T1('N'), T1('O'),  T1('P'), T1('Q'), T1('R'), T1('S'),
    T1('T'), T1('U'), T1('V'), T1('W'), T1('X'), T1('Y'),  T1('Z'),
};
#undef T1

int http_syntax_tchar(unsigned char ch)
{
    return tchar_table[ch];
}

int http_syntax_token(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!tchar_table[(unsigned char)s[i]])
            return 0;
    return 1;
}

static int field_byte_ok(unsigned char ch)
{
    return (ch >= 0x20 || ch == '\t') && ch != 0x7f;
}

/* Every value of every message is checked: eight bytes at a time, a word with no byte below
 * 0x20 and none equal to 0x7f is passed whole; only a word with one (a tab, or a bad byte) is
 * looked at byte by byte. */
int http_syntax_field_value(const char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w, del;
        memcpy(&w, s + i, 8);
        del = w ^ (ones * 0x7f);
        if ((((w - ones * 0x20) & ~w) | ((del - ones) & ~del)) & highs) {
            for (size_t k = i; k < i + 8; k++)
                if (!field_byte_ok((unsigned char)s[k]))
                    return 0;
        }
    }
    for (; i < n; i++)
        if (!field_byte_ok((unsigned char)s[i]))
            return 0;
    return 1;
}

int http_syntax_target(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f)
            return 0;
    }
    return 1;
}

static int hex_digit(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f');
}

/* reg-name = *( unreserved / pct-encoded / sub-delims ) (RFC 3986 §3.2.2) */
static int reg_name(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '%') {
            if (i + 2 >= n || !hex_digit((unsigned char)s[i + 1]) ||
                !hex_digit((unsigned char)s[i + 2]))
                return 0;
            i += 2;
        } else if (!((ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') ||
                     strchr("-._~!$&'()*+,;=", ch))) {
            return 0;
        }
    }
    return 1;
}

int http_syntax_host(const char *s, size_t n)
{
    size_t host_len;
    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        char addr[64];
        unsigned char bin[16];
        if (!close)
            return 0;
        size_t alen = (size_t)(close - s) - 1;
        if (alen == 0 || alen >= sizeof addr)
            return 0;
        memcpy(addr, s + 1, alen);
        addr[alen] = '\0';
        if (inet_pton(AF_INET6, addr, bin) != 1)
            return 0;
        host_len = (size_t)(close - s) + 1;
    } else {
        const char *colon = memchr(s, ':', n);
        host_len = colon ? (size_t)(colon - s) : n;
        if (!reg_name(s, host_len))
            return 0;
    }
    if (host_len == n)
        return 1;
    if (s[host_len] != ':')
        return 0;
    /* port = *DIGIT, kept to a real port number */
    unsigned long port = 0;
    for (size_t i = host_len + 1; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || i - host_len > 5)
            return 0;
        port = port * 10 + (unsigned long)(s[i] - '0');
    }
    return port <= 65535;
}
