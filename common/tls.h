/* tls: the server side of TLS 1.2 over mbedTLS 2.28, fed through memory buffers so the HTTP
 * server (or anything else) owns the socket: ciphertext read from the socket goes in with
 * tls_conn_feed(), plaintext comes out of tls_conn_read(); plaintext goes in with
 * tls_conn_write() and the ciphertext to send is taken with tls_conn_take_out().
 *
 * Policy: TLS 1.2 only, ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only, the
 * server's cipher order, ECDSA and/or RSA certificates (chosen per the client's suites),
 * ALPN "http/1.1". Session tickets are sealed with AES-256-GCM under keys the caller supplies
 * through a callback, so that every process given the same keys (the gateway's workers, via
 * shared memory) accepts the tickets of the others; the first key seals, all of them open. */
#ifndef COMMON_TLS_H
#define COMMON_TLS_H

#include <stddef.h>
#include <stdint.h>

typedef struct tls_server tls_server;
typedef struct tls_conn tls_conn;

typedef struct tls_ticket_key {
    uint8_t name[16];
    uint8_t key[32];
} tls_ticket_key;

/* Fills out[0..max) with the current keys, out[0] sealing new tickets; returns how many
 * (0: no tickets issued). */
typedef size_t (*tls_ticket_keys_fn)(void *ud, tls_ticket_key *out, size_t max);

typedef struct tls_server_opts {
    const char *cert_file, *key_file;   /* PEM chain and key (ECDSA or RSA) */
    const char *cert2_file, *key2_file; /* optional second pair, NULL when none */
    tls_ticket_keys_fn ticket_keys;     /* NULL: no session tickets */
    void *ticket_ud;
    uint32_t ticket_lifetime_s; /* 0: 43200 (12 h) */
} tls_server_opts;

/* Loads certificates and keys and seeds this process's own DRBG (call it after fork()).
 * NULL on error with a message in err. */
tls_server *tls_server_new(const tls_server_opts *opts, char *err, size_t errcap);
void tls_server_free(tls_server *srv);

#define TLS_AGAIN  0    /* tls_conn_read: nothing to give yet, feed more */
#define TLS_CLOSED (-1) /* the peer sent close_notify */
#define TLS_ERROR  (-2) /* fatal: send what tls_conn_take_out gives (an alert), then close */

tls_conn *tls_conn_new(tls_server *srv);
void tls_conn_free(tls_conn *c);
/* Ciphertext received from the peer (copied). */
void tls_conn_feed(tls_conn *c, const void *data, size_t len);
/* Runs the handshake, then decrypts: > 0 bytes of plaintext written to buf, or TLS_AGAIN,
 * TLS_CLOSED, TLS_ERROR. Call until TLS_AGAIN after each feed (and flush the output). */
int tls_conn_read(tls_conn *c, void *buf, size_t cap);
/* Encrypts all of data (after the handshake). Returns 0, or TLS_ERROR. */
int tls_conn_write(tls_conn *c, const void *data, size_t len);
/* Queues a close_notify alert. */
void tls_conn_close_notify(tls_conn *c);
/* Hands over the ciphertext waiting for the socket (malloc'ed, the caller frees); returns its
 * length, 0 when there is none (then *out is NULL). */
size_t tls_conn_take_out(tls_conn *c, char **out);
/* 1 when input was fed that tls_conn_read has not turned into plaintext yet (call it again). */
int tls_conn_pending(const tls_conn *c);
int tls_conn_handshake_done(const tls_conn *c);
/* 1 when the handshake resumed a session (ticket). */
int tls_conn_resumed(const tls_conn *c);
/* Negotiated protocol text, e.g. "TLSv1.2" and suite name; "" before the handshake. */
const char *tls_conn_cipher(const tls_conn *c);
/* Last mbedTLS error text of this connection (for logs). */
const char *tls_conn_error(const tls_conn *c);

#endif
