/* config: settings from environment variables (12-factor). Every value can also come from a
 * file named by NAME_FILE (Docker secrets); the file's trailing newline is dropped. */
#ifndef COMMON_CONFIG_H
#define COMMON_CONFIG_H

#include <stddef.h>

/* The value of NAME, else the contents of the file NAME_FILE, else def (may be NULL).
 * The returned string lives until exit. */
const char *config_str(const char *name, const char *def);

/* Integer, boolean (1/0, true/false, yes/no, on/off) and size ("1m", "512k", "50M", bytes)
 * and duration ("5s", "250ms", "15m", "1h", "30d"; a bare number is milliseconds) values.
 * A value that does not parse is reported on stderr and the process exits with status 2:
 * a typo in a setting must never run silently with another value. */
long config_int(const char *name, long def);
int config_bool(const char *name, int def);
size_t config_size(const char *name, size_t def);
long config_ms(const char *name, long def);

/* The same parsers for strings read elsewhere (the gateway's INI file). Return 0 on success. */
int config_parse_size(const char *s, size_t *out);
int config_parse_ms(const char *s, long *out);
int config_parse_bool(const char *s, int *out);

/* Splits a comma-separated list into its items, blanks around each trimmed, empty items
 * dropped. Returns the count; *items (and each item) is malloc'd: config_list_free. */
size_t config_list(const char *s, char ***items);
void config_list_free(char **items, size_t n);

/* "host:port" split into host (no brackets for IPv6) and port. Returns 0 on success. */
int config_parse_hostport(const char *s, char *host, size_t hostcap, int *port);

#endif
