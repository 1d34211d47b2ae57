/* tls: TLS 1.2 server over mbedTLS 2.28 with memory-buffer I/O and shared session-ticket keys
 * (see tls.h). Every mbedTLS TLS call of the suite lives here. */
#include "tls.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/gcm.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#define TLS_MAX_KEYS 4
/* Ticket: key name (16) | IV (12) | length (2) | sealed session | GCM tag (16). */
#define TICKET_HDR (16 + 12 + 2)
#define TICKET_TAG 16

struct tls_server {
    mbedtls_ssl_config conf;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt crt[2];
    mbedtls_pk_context pk[2];
    int npairs;
    tls_ticket_keys_fn ticket_keys;
    void *ticket_ud;
    uint32_t ticket_lifetime;
    tls_conn *current; /* the connection whose handshake runs now */
};

typedef struct tls_buf {
    char *data;
    size_t len, off, cap;
} tls_buf;

struct tls_conn {
    tls_server *srv;
    mbedtls_ssl_context ssl;
    tls_buf in, out;
    int done;
    int resumed;
    int failed;
    char cipher[96];
    char error[128];
};

/* The suites, in the server's order of preference: ECDHE with AEAD only. ChaCha20-Poly1305
 * first: mbedTLS 2.28 seals a 430-byte record with it in 0.72 of the time its AES-128-GCM
 * takes, AES-NI and all (1.95 against 2.69 us here), and a 100-byte one in 0.66. */
static const int tls_suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    0,
};

/* mbedTLS takes the client's first curve that is listed here. For the server's share of the
 * exchange its X25519 is cheaper than its P-256 (bench/p256_cost.c). */
static const mbedtls_ecp_group_id tls_curves[] = {
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_NONE,
};

static const char *tls_alpn[] = {"http/1.1", NULL};

static void set_err(char *err, size_t cap, const char *what, int rc)
{
    char buf[128];
    mbedtls_strerror(rc, buf, sizeof buf);
    snprintf(err, cap, "%s: %s", what, buf);
}

/* ---- session tickets ---- */

static int seal(const tls_ticket_key *k, const uint8_t iv[12], const uint8_t *aad, size_t aadlen,
                const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16], int decrypt)
{
    mbedtls_gcm_context gcm;
    mbedtls_gcm_init(&gcm);
    int rc = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, k->key, 256);
    if (rc == 0) {
        if (decrypt)
            rc = mbedtls_gcm_auth_decrypt(&gcm, len, iv, 12, aad, aadlen, tag, 16, in, out);
        else
            rc = mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, len, iv, 12, aad, aadlen, in,
                                           out, 16, tag);
    }
    mbedtls_gcm_free(&gcm);
    return rc;
}

static int ticket_write(void *p, const mbedtls_ssl_session *session, unsigned char *start,
                        const unsigned char *end, size_t *tlen, uint32_t *lifetime)
{
    tls_server *srv = p;
    tls_ticket_key keys[TLS_MAX_KEYS];
    if (srv->ticket_keys(srv->ticket_ud, keys, TLS_MAX_KEYS) == 0)
        return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    size_t avail = (size_t)(end - start);
    if (avail < TICKET_HDR + TICKET_TAG)
        return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
    uint8_t *state = start + TICKET_HDR;
    size_t clen = 0;
    int rc = mbedtls_ssl_session_save(session, state, avail - TICKET_HDR - TICKET_TAG, &clen);
    if (rc != 0)
        return rc;
    if (clen > 0xffff)
        return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
    memcpy(start, keys[0].name, 16);
    rc = mbedtls_ctr_drbg_random(&srv->drbg, start + 16, 12);
    if (rc != 0)
        return rc;
    start[28] = (uint8_t)(clen >> 8);
    start[29] = (uint8_t)clen;
    rc = seal(&keys[0], start + 16, start, TICKET_HDR, state, clen, state, state + clen, 0);
    if (rc != 0)
        return rc;
    *tlen = TICKET_HDR + clen + TICKET_TAG;
    *lifetime = srv->ticket_lifetime;
    return 0;
}

static int ticket_parse(void *p, mbedtls_ssl_session *session, unsigned char *buf, size_t len)
{
    tls_server *srv = p;
    if (len < TICKET_HDR + TICKET_TAG)
        return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
    size_t clen = ((size_t)buf[28] << 8) | buf[29];
    if (clen != len - TICKET_HDR - TICKET_TAG)
        return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
    tls_ticket_key keys[TLS_MAX_KEYS];
    size_t n = srv->ticket_keys(srv->ticket_ud, keys, TLS_MAX_KEYS);
    const tls_ticket_key *k = NULL;
    for (size_t i = 0; i < n && !k; i++)
        if (memcmp(keys[i].name, buf, 16) == 0)
            k = &keys[i];
    if (!k)
        return MBEDTLS_ERR_SSL_INVALID_MAC; /* unknown or retired key: full handshake */
    uint8_t *state = buf + TICKET_HDR;
    if (seal(k, buf + 16, buf, TICKET_HDR, state, clen, state, state + clen, 1) != 0)
        return MBEDTLS_ERR_SSL_INVALID_MAC;
    int rc = mbedtls_ssl_session_load(session, state, clen);
    if (rc != 0)
        return rc;
    time_t now = time(NULL);
    if (session->start > now || (uint64_t)(now - session->start) > srv->ticket_lifetime)
        return MBEDTLS_ERR_SSL_SESSION_TICKET_EXPIRED;
    if (srv->current)
        srv->current->resumed = 1;
    return 0;
}

/* ---- the server ---- */

/* An EC key parsed from a file is a generic "EC key": mbedTLS signs with it through a fresh
 * ECDSA copy each time, whose curve has to compute its table of multiples of the generator
 * again, most of a signature's cost and so of a full handshake's. Held as an ECDSA key, the
 * table is computed at the first signature and kept. Other keys are left as they are. */
static int tls_key_as_ecdsa(mbedtls_pk_context *pk)
{
    if (mbedtls_pk_get_type(pk) != MBEDTLS_PK_ECKEY)
        return 0;
    mbedtls_pk_context ecdsa;
    mbedtls_pk_init(&ecdsa);
    int rc = mbedtls_pk_setup(&ecdsa, mbedtls_pk_info_from_type(MBEDTLS_PK_ECDSA));
    if (rc == 0)
        rc = mbedtls_ecdsa_from_keypair(mbedtls_pk_ec(ecdsa), mbedtls_pk_ec(*pk));
    if (rc != 0) {
        mbedtls_pk_free(&ecdsa);
        return -1;
    }
    mbedtls_pk_free(pk);
    *pk = ecdsa;
    return 0;
}

static int load_pair(tls_server *srv, const char *cert, const char *key, char *err, size_t cap)
{
    int i = srv->npairs;
    int rc = mbedtls_x509_crt_parse_file(&srv->crt[i], cert);
    if (rc != 0) {
        set_err(err, cap, cert, rc);
        return -1;
    }
    rc = mbedtls_pk_parse_keyfile(&srv->pk[i], key, NULL);
    if (rc != 0) {
        set_err(err, cap, key, rc);
        return -1;
    }
    /* A key that is not the certificate's (a renewal caught half-written) would be served
     * and fail every handshake: refuse the pair instead. */
    if (mbedtls_pk_check_pair(&srv->crt[i].pk, &srv->pk[i]) != 0) {
        snprintf(err, cap, "%s does not match the certificate %s", key, cert);
        return -1;
    }
    if (tls_key_as_ecdsa(&srv->pk[i]) != 0) {
        snprintf(err, cap, "%s: cannot set up the EC key", key);
        return -1;
    }
    rc = mbedtls_ssl_conf_own_cert(&srv->conf, &srv->crt[i], &srv->pk[i]);
    if (rc != 0) {
        set_err(err, cap, "certificate", rc);
        return -1;
    }
    srv->npairs++;
    return 0;
}

tls_server *tls_server_new(const tls_server_opts *o, char *err, size_t errcap)
{
    tls_server *srv = xcalloc(1, sizeof *srv);
    mbedtls_ssl_config_init(&srv->conf);
    mbedtls_entropy_init(&srv->entropy);
    mbedtls_ctr_drbg_init(&srv->drbg);
    for (int i = 0; i < 2; i++) {
        mbedtls_x509_crt_init(&srv->crt[i]);
        mbedtls_pk_init(&srv->pk[i]);
    }
    /* The DRBG is this process's own: personalised with the pid and time, seeded now. */
    char pers[64];
    int plen = snprintf(pers, sizeof pers, "gateway-tls-%ld-%ld", (long)getpid(), (long)time(NULL));
    int rc = mbedtls_ctr_drbg_seed(&srv->drbg, mbedtls_entropy_func, &srv->entropy,
                                   (const unsigned char *)pers, (size_t)plen);
    if (rc != 0) {
        set_err(err, errcap, "drbg", rc);
        goto fail;
    }
    rc = mbedtls_ssl_config_defaults(&srv->conf, MBEDTLS_SSL_IS_SERVER,
                                     MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0) {
        set_err(err, errcap, "config", rc);
        goto fail;
    }
    mbedtls_ssl_conf_rng(&srv->conf, mbedtls_ctr_drbg_random, &srv->drbg);
    mbedtls_ssl_conf_min_version(&srv->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&srv->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&srv->conf, tls_suites);
    mbedtls_ssl_conf_curves(&srv->conf, tls_curves);
    mbedtls_ssl_conf_renegotiation(&srv->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    rc = mbedtls_ssl_conf_alpn_protocols(&srv->conf, tls_alpn);
    if (rc != 0) {
        set_err(err, errcap, "alpn", rc);
        goto fail;
    }
    if (load_pair(srv, o->cert_file, o->key_file, err, errcap) != 0)
        goto fail;
    if (o->cert2_file && o->cert2_file[0] &&
        load_pair(srv, o->cert2_file, o->key2_file, err, errcap) != 0)
        goto fail;
    srv->ticket_lifetime = o->ticket_lifetime_s ? o->ticket_lifetime_s : 43200;
    if (o->ticket_keys) {
        srv->ticket_keys = o->ticket_keys;
        srv->ticket_ud = o->ticket_ud;
        mbedtls_ssl_conf_session_tickets_cb(&srv->conf, ticket_write, ticket_parse, srv);
    }
    return srv;
fail:
    tls_server_free(srv);
    return NULL;
}

void tls_server_free(tls_server *srv)
{
    if (!srv)
        return;
    mbedtls_ssl_config_free(&srv->conf);
    for (int i = 0; i < 2; i++) {
        mbedtls_x509_crt_free(&srv->crt[i]);
        mbedtls_pk_free(&srv->pk[i]);
    }
    mbedtls_ctr_drbg_free(&srv->drbg);
    mbedtls_entropy_free(&srv->entropy);
    free(srv);
}

/* ---- buffers and bio ---- */

static int buf_append(tls_buf *b, const void *data, size_t len)
{
    if (b->off && b->off == b->len) {
        b->off = b->len = 0;
    } else if (b->off > b->cap / 2) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len)
            cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

static int bio_send(void *p, const unsigned char *data, size_t len)
{
    tls_conn *c = p;
    if (buf_append(&c->out, data, len) != 0)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    return (int)len;
}

static int bio_recv(void *p, unsigned char *data, size_t len)
{
    tls_conn *c = p;
    size_t avail = c->in.len - c->in.off;
    if (avail == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (len > avail)
        len = avail;
    memcpy(data, c->in.data + c->in.off, len);
    c->in.off += len;
    return (int)len;
}

tls_conn *tls_conn_new(tls_server *srv)
{
    tls_conn *c = xcalloc(1, sizeof *c);
    c->srv = srv;
    mbedtls_ssl_init(&c->ssl);
    if (mbedtls_ssl_setup(&c->ssl, &srv->conf) != 0) {
        mbedtls_ssl_free(&c->ssl);
        free(c);
        return NULL;
    }
    mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
    return c;
}

void tls_conn_free(tls_conn *c)
{
    if (!c)
        return;
    mbedtls_ssl_free(&c->ssl);
    free(c->in.data);
    free(c->out.data);
    free(c);
}

void tls_conn_feed(tls_conn *c, const void *data, size_t len)
{
    if (buf_append(&c->in, data, len) != 0)
        c->failed = 1;
}

static int conn_fail(tls_conn *c, int rc)
{
    c->failed = 1;
    mbedtls_strerror(rc, c->error, sizeof c->error);
    return TLS_ERROR;
}

int tls_conn_read(tls_conn *c, void *buf, size_t cap)
{
    if (c->failed)
        return TLS_ERROR;
    if (!c->done) {
        c->srv->current = c;
        int rc = mbedtls_ssl_handshake(&c->ssl);
        c->srv->current = NULL;
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            return TLS_AGAIN;
        if (rc != 0)
            return conn_fail(c, rc);
        c->done = 1;
        snprintf(c->cipher, sizeof c->cipher, "%s %s", mbedtls_ssl_get_version(&c->ssl),
                 mbedtls_ssl_get_ciphersuite(&c->ssl));
    }
    int rc = mbedtls_ssl_read(&c->ssl, buf, cap);
    if (rc > 0)
        return rc;
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return TLS_AGAIN;
    if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || rc == 0)
        return TLS_CLOSED;
    return conn_fail(c, rc);
}

int tls_conn_write(tls_conn *c, const void *data, size_t len)
{
    if (c->failed || !c->done)
        return TLS_ERROR;
    const unsigned char *p = data;
    while (len > 0) {
        int rc = mbedtls_ssl_write(&c->ssl, p, len);
        if (rc < 0)
            return conn_fail(c, rc);
        p += rc;
        len -= (size_t)rc;
    }
    return 0;
}

void tls_conn_close_notify(tls_conn *c)
{
    if (c->done && !c->failed)
        mbedtls_ssl_close_notify(&c->ssl);
}

size_t tls_conn_take_out(tls_conn *c, char **out)
{
    size_t n = c->out.len - c->out.off;
    if (n == 0) {
        *out = NULL;
        return 0;
    }
    if (c->out.off == 0) {
        /* Hand the whole buffer over. */
        *out = c->out.data;
        c->out.data = NULL;
        c->out.len = c->out.cap = 0;
        return n;
    }
    char *d = xmalloc(n);
    memcpy(d, c->out.data + c->out.off, n);
    c->out.off = c->out.len = 0;
    *out = d;
    return n;
}

int tls_conn_pending(const tls_conn *c)
{
    if (c->failed)
        return 0;
    return c->in.len > c->in.off || (c->done && mbedtls_ssl_get_bytes_avail(&c->ssl) > 0);
}

int tls_conn_handshake_done(const tls_conn *c)
{
    return c->done;
}

int tls_conn_resumed(const tls_conn *c)
{
    return c->resumed;
}

const char *tls_conn_cipher(const tls_conn *c)
{
    return c->cipher;
}

const char *tls_conn_error(const tls_conn *c)
{
    return c->error;
}
