/* healthcheck: `PROGRAM --healthcheck`, the check a container's HEALTHCHECK runs, so that
 * images need no curl: a blocking HTTP/1.0 GET of path on 127.0.0.1:port with a deadline.
 * For start-up and the command line only, never on an event loop. */
#ifndef COMMON_HEALTHCHECK_H
#define COMMON_HEALTHCHECK_H

/* The response's status code, or -1 when nothing answered within timeout_ms. */
int healthcheck_get(int port, const char *path, unsigned timeout_ms);

/* When argv[1] is "--healthcheck": asks GET path on the port in the environment variable
 * port_env (PORT for services), prints one line and returns the exit status (0 when the
 * answer is 200, 1 otherwise); else returns -1 and the program goes on. */
int healthcheck_main(int argc, char **argv, const char *port_env, const char *path);

#endif
