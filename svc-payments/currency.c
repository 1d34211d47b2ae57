/* currency: the ISO 4217 active currency codes (list one) accepted for payments, sorted for a
 * binary search. Left out on purpose: codes that are not money one pays with (precious
 * metals XAU XAG XPD XPT, bond units XBA..XBD, XDR, XSU, XUA, the test code XTS and XXX).
 * Keep in step with migrations/001_payments.sql (the currencies table). */
#include "currency.h"

#include <stdlib.h>
#include <string.h>

static const char currency_codes[][4] = {
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS",
    "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW",
    "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
    "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL",
    "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY",
    "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG", "ZWL",
};

#define CURRENCY_N (sizeof currency_codes / sizeof currency_codes[0])

static int currency_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

int currency_normalize(const char *s, char out[4])
{
    char up[4];
    for (int i = 0; i < 3; i++) {
        char c = s[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c < 'A' || c > 'Z')
            return 0;
        up[i] = c;
    }
    if (s[3] != '\0')
        return 0;
    up[3] = '\0';
    if (!bsearch(up, currency_codes, CURRENCY_N, sizeof currency_codes[0], currency_cmp))
        return 0;
    memcpy(out, up, 4);
    return 1;
}

size_t currency_count(void)
{
    return CURRENCY_N;
}

const char *currency_at(size_t i)
{
    return i < CURRENCY_N ? currency_codes[i] : NULL;
}
