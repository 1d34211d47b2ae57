/* currency: the ISO 4217 codes svc-payments accepts (a static table; the migration's
 * currencies table holds the same list). */
#ifndef PAYMENTS_CURRENCY_H
#define PAYMENTS_CURRENCY_H

#include <stddef.h>

/* Copies the code uppercased into out (4 bytes) when s is a known ISO 4217 code in any case.
 * Returns 1 when known, 0 otherwise. */
int currency_normalize(const char *s, char out[4]);
/* The table itself (sorted), for tests. */
size_t currency_count(void);
const char *currency_at(size_t i);

#endif
