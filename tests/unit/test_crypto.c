/* test_crypto: base64url and hex (RFC 4648 vectors, strict rejections), SHA-256 and
 * HMAC-SHA256 (RFC 4231 vectors), the DRBG (distinct outputs, also across fork and threads)
 * and ECDSA P-256 checked against the openssl command line tool in both directions. */
#include "crypto.h"
#include "query.h"
#include "test.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void hexstr(const uint8_t *p, size_t n, char *out)
{
    crypto_hex(p, n, out);
}

static void b64url_vectors(void)
{
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *enc[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    char out[32];
    uint8_t dec[32];
    size_t n;
    for (size_t i = 0; i < 7; i++) {
        size_t len = strlen(plain[i]);
        CHECK_INT(crypto_b64url_len(len), strlen(enc[i]));
        CHECK_INT(crypto_b64url_encode(plain[i], len, out), strlen(enc[i]));
        CHECK_STR(out, enc[i]);
        n = 99;
        CHECK_INT(crypto_b64url_decode(enc[i], strlen(enc[i]), dec, sizeof dec, &n), 0);
        CHECK_INT(n, len);
        CHECK(memcmp(dec, plain[i], len) == 0);
    }
    /* The url-safe alphabet: '-' and '_' where standard base64 has '+' and '/'. */
    const uint8_t bin[] = {0xfb, 0xff, 0xbf, 0xfb, 0xef};
    CHECK_INT(crypto_b64url_encode(bin, sizeof bin, out), 7);
    CHECK_STR(out, "-_-_--8");
    CHECK_INT(crypto_b64url_decode("-_-_--8", 7, dec, sizeof dec, &n), 0);
    CHECK_INT(n, 5);
    CHECK(memcmp(dec, bin, 5) == 0);
    /* Round trip of every byte value. */
    uint8_t all[256], back[256];
    char allenc[400];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    size_t el = crypto_b64url_encode(all, 256, allenc);
    CHECK_INT(crypto_b64url_decode(allenc, el, back, sizeof back, &n), 0);
    CHECK_INT(n, 256);
    CHECK(memcmp(all, back, 256) == 0);
}

static void b64url_strict(void)
{
    uint8_t dec[32];
    size_t n;
    static const char *bad[] = {
        "Zg==",    /* padding */
        "Zm8=",    /* padding */
        "Z",       /* impossible length */
        "Zm9vY",   /* impossible length */
        "Zh",      /* non-zero trailing bits */
        "Zm9",     /* non-zero trailing bits */
        "Zm9v+g",  /* standard alphabet */
        "Zm9v/g",  /* standard alphabet */
        "Zm 9v",   /* space */
        "Zm9v\n",  /* newline */
        "Zm\x80v", /* non-ASCII */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (crypto_b64url_decode(bad[i], strlen(bad[i]), dec, sizeof dec, &n) == 0)
            printf("  accepted \"%s\"\n", bad[i]);
        CHECK(crypto_b64url_decode(bad[i], strlen(bad[i]), dec, sizeof dec, &n) != 0);
    }
    /* An embedded NUL within the given length. */
    CHECK(crypto_b64url_decode("Zm\0v", 4, dec, sizeof dec, &n) != 0);
    /* Output capacity too small. */
    CHECK(crypto_b64url_decode("Zm9vYmFy", 8, dec, 5, &n) != 0);
    CHECK_INT(crypto_b64url_decode("Zm9vYmFy", 8, dec, 6, &n), 0);
}

static void hex(void)
{
    const uint8_t in[] = {0x00, 0x01, 0xab, 0xff};
    char out[9];
    crypto_hex(in, 4, out);
    CHECK_STR(out, "0001abff");
    uint8_t back[4];
    CHECK_INT(crypto_unhex("0001ABff", 8, back, 4), 0);
    CHECK(memcmp(back, in, 4) == 0);
    CHECK(crypto_unhex("0001abf", 7, back, 4) != 0);
    CHECK(crypto_unhex("0001abff00", 10, back, 4) != 0);
    CHECK(crypto_unhex("0001abfg", 8, back, 4) != 0);
}

/* One hex digit's value, for crypto_unhex and query_unescape's %XX alike: both cases, and
 * -1 for every other byte (high bytes included). */
static void hex_value(void)
{
    int wrong = 0;
    for (int c = 0; c < 256; c++) {
        int want = c >= '0' && c <= '9'   ? c - '0'
                   : c >= 'a' && c <= 'f' ? c - 'a' + 10
                   : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                          : -1;
        wrong += crypto_hex_value((unsigned char)c) != want;
    }
    CHECK_INT(wrong, 0);
    char out[16];
    CHECK_INT(query_unescape("%4a%4B%7e", 9, out, sizeof out, 0), 3);
    CHECK_STR(out, "JK~");
    CHECK_INT(query_unescape("%4g", 3, out, sizeof out, 0), -1);
    static const char high[] = {'%', (char)0xff, '1'};
    CHECK_INT(query_unescape(high, sizeof high, out, sizeof out, 0), -1);
}

static void sha256_vectors(void)
{
    uint8_t h[32];
    char hx[65];
    crypto_sha256("", 0, h);
    hexstr(h, 32, hx);
    CHECK_STR(hx, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    crypto_sha256("abc", 3, h);
    hexstr(h, 32, hx);
    CHECK_STR(hx, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    crypto_sha256(m, strlen(m), h);
    hexstr(h, 32, hx);
    CHECK_STR(hx, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void hmac_rfc4231(void)
{
    uint8_t mac[32];
    char hx[65];
    uint8_t key[131];

    memset(key, 0x0b, 20); /* test case 1 */
    crypto_hmac_sha256(key, 20, "Hi There", 8, mac);
    hexstr(mac, 32, hx);
    CHECK_STR(hx, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    const char *d2 = "what do ya want for nothing?"; /* test case 2 */
    crypto_hmac_sha256("Jefe", 4, d2, strlen(d2), mac);
    hexstr(mac, 32, hx);
    CHECK_STR(hx, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    uint8_t d3[50]; /* test case 3 */
    memset(key, 0xaa, 20);
    memset(d3, 0xdd, sizeof d3);
    crypto_hmac_sha256(key, 20, d3, sizeof d3, mac);
    hexstr(mac, 32, hx);
    CHECK_STR(hx, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");

    memset(key, 0xaa, 131); /* test case 6: key longer than the block */
    const char *d6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    crypto_hmac_sha256(key, 131, d6, strlen(d6), mac);
    hexstr(mac, 32, hx);
    CHECK_STR(hx, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

    const char *d7 = "This is a test using a larger than block-size key and a larger than "
                     "block-size data. The key needs to be hashed before being used by the "
                     "HMAC algorithm."; /* test case 7 */
    crypto_hmac_sha256(key, 131, d7, strlen(d7), mac);
    hexstr(mac, 32, hx);
    CHECK_STR(hx, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

static void ct_equal(void)
{
    CHECK(crypto_ct_equal("abcdef", "abcdef", 6));
    CHECK(!crypto_ct_equal("abcdef", "abcdeg", 6));
    CHECK(!crypto_ct_equal("xbcdef", "abcdef", 6));
    CHECK(crypto_ct_equal("a", "b", 0));
}

static void random_distinct(void)
{
    CHECK_INT(crypto_init(), 0);
    uint8_t a[32], b[32], zero[32] = {0};
    CHECK_INT(crypto_random(a, sizeof a), 0);
    CHECK_INT(crypto_random(b, sizeof b), 0);
    CHECK(memcmp(a, b, 32) != 0);
    CHECK(memcmp(a, zero, 32) != 0);
    /* Requests larger than one DRBG call. */
    size_t big = 5000;
    uint8_t *p = calloc(1, big);
    CHECK_INT(crypto_random(p, big), 0);
    CHECK(memcmp(p + big - 32, zero, 32) != 0);
    CHECK(memcmp(p, p + 1024, 32) != 0);
    free(p);
    char tok[64];
    char tok2[64];
    CHECK_INT(crypto_random_token(tok, 32), 0);
    CHECK_INT(crypto_random_token(tok2, 32), 0);
    CHECK_INT(strlen(tok), 43);
    CHECK(strcmp(tok, tok2) != 0);
}

/* The child's next bytes vs the parent's next bytes after fork. with_init: the child calls
 * crypto_init first (as the services do); without it the DRBG must still not repeat. */
static int fork_differs(int with_init)
{
    uint8_t warm[8];
    crypto_random(warm, sizeof warm);
    int fds[2];
    if (pipe(fds) != 0)
        return 0;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        uint8_t c[32];
        if (with_init && crypto_init() != 0)
            _exit(1);
        if (crypto_random(c, sizeof c) != 0)
            _exit(1);
        if (write(fds[1], c, sizeof c) != (ssize_t)sizeof c)
            _exit(1);
        _exit(0);
    }
    close(fds[1]);
    uint8_t parent[32], child[32];
    crypto_random(parent, sizeof parent);
    ssize_t n = read(fds[0], child, sizeof child);
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    return n == 32 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && memcmp(parent, child, 32) != 0;
}

static void random_after_fork(void)
{
    CHECK(fork_differs(1));
    CHECK(fork_differs(0));
}

static void *random_thread(void *arg)
{
    uint8_t *out = arg;
    for (int i = 0; i < 200; i++)
        if (crypto_random(out, 32) != 0)
            return (void *)1;
    return NULL;
}

static void random_threads(void)
{
    pthread_t t[4];
    uint8_t outs[4][32];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, random_thread, outs[i]);
    int errors = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        errors += r != NULL;
    }
    CHECK_INT(errors, 0);
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++)
            CHECK(memcmp(outs[i], outs[j], 32) != 0);
}

/* ---- ECDSA against the openssl CLI ---- */

static char tmpdir[] = "/tmp/test_crypto_XXXXXX";

static char *tmp_path(const char *name)
{
    static char buf[8][256];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    return p;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    fflush(stdout);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 16);
    *len = fread(buf, 1, (1 << 16) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static int write_all(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = fwrite(data, 1, len, f);
    fclose(f);
    return n == len ? 0 : -1;
}

static size_t der_int(const uint8_t *v, uint8_t *out)
{
    size_t i = 0;
    while (i < 31 && v[i] == 0)
        i++;
    size_t n = 32 - i;
    size_t o = 0;
    out[o++] = 0x02;
    int pad = v[i] & 0x80;
    out[o++] = (uint8_t)(n + (pad ? 1 : 0));
    if (pad)
        out[o++] = 0;
    memcpy(out + o, v + i, n);
    return o + n;
}

/* r||s to a DER ECDSA-Sig-Value. */
static size_t sig_to_der(const uint8_t sig[64], uint8_t *out)
{
    uint8_t body[80];
    size_t n = der_int(sig, body);
    n += der_int(sig + 32, body + n);
    out[0] = 0x30;
    out[1] = (uint8_t)n;
    memcpy(out + 2, body, n);
    return n + 2;
}

static int der_read_int(const uint8_t **p, const uint8_t *end, uint8_t out[32])
{
    if (end - *p < 2 || (*p)[0] != 0x02)
        return -1;
    size_t n = (*p)[1];
    const uint8_t *v = *p + 2;
    if ((size_t)(end - v) < n)
        return -1;
    *p = v + n;
    while (n > 0 && *v == 0) {
        v++;
        n--;
    }
    if (n > 32)
        return -1;
    memset(out, 0, 32);
    memcpy(out + 32 - n, v, n);
    return 0;
}

static int der_to_sig(const uint8_t *der, size_t len, uint8_t sig[64])
{
    if (len < 2 || der[0] != 0x30 || der[1] != len - 2)
        return -1;
    const uint8_t *p = der + 2, *end = der + len;
    if (der_read_int(&p, end, sig) != 0 || der_read_int(&p, end, sig + 32) != 0)
        return -1;
    return p == end ? 0 : -1;
}

static crypto_ec_key *load_pem(const char *path)
{
    size_t len;
    char *pem = read_all(path, &len);
    if (!pem)
        return NULL;
    crypto_ec_key *k = crypto_ec_key_from_pem(pem, len); /* length without the NUL */
    free(pem);
    return k;
}

/* A key file of the fixture that must load (a failed check when it does not). */
static crypto_ec_key *need_pem(const char *name)
{
    crypto_ec_key *k = load_pem(tmp_path(name));
    CHECK(k != NULL);
    return k;
}

static int have_keys;

static void ec_setup(void)
{
    CHECK(mkdtemp(tmpdir) != NULL);
    have_keys = sh("openssl ecparam -name prime256v1 -genkey -noout -out %s 2>/dev/null && "
                   "openssl ec -in %s -pubout -out %s 2>/dev/null && "
                   "openssl pkcs8 -topk8 -nocrypt -in %s -out %s 2>/dev/null",
                   tmp_path("key.pem"), tmp_path("key.pem"), tmp_path("pub.pem"),
                   tmp_path("key.pem"), tmp_path("pkcs8.pem")) == 0;
    CHECK(have_keys);
}

static void ec_load(void)
{
    crypto_ec_key *priv = load_pem(tmp_path("key.pem"));
    crypto_ec_key *p8 = load_pem(tmp_path("pkcs8.pem"));
    crypto_ec_key *pub = load_pem(tmp_path("pub.pem"));
    CHECK(priv && p8 && pub);
    CHECK(crypto_ec_key_is_private(priv));
    CHECK(crypto_ec_key_is_private(p8));
    CHECK(!crypto_ec_key_is_private(pub));
    uint8_t x1[32], y1[32], x2[32], y2[32];
    CHECK_INT(crypto_ec_key_xy(priv, x1, y1), 0);
    CHECK_INT(crypto_ec_key_xy(pub, x2, y2), 0);
    CHECK(memcmp(x1, x2, 32) == 0 && memcmp(y1, y2, 32) == 0);
    /* A PEM whose length counts its NUL is accepted too. */
    size_t len;
    char *pem = read_all(tmp_path("pub.pem"), &len);
    crypto_ec_key *pub2 = crypto_ec_key_from_pem(pem, len + 1);
    CHECK(pub2 != NULL);
    crypto_ec_key_free(pub2);
    /* Garbage and a truncated PEM are refused. */
    CHECK(crypto_ec_key_from_pem("not a key", 9) == NULL);
    CHECK(crypto_ec_key_from_pem(pem, len / 2) == NULL);
    free(pem);
    /* A key on another curve is refused. */
    if (sh("openssl ecparam -name secp384r1 -genkey -noout -out %s 2>/dev/null",
           tmp_path("p384.pem")) == 0) {
        crypto_ec_key *k384 = load_pem(tmp_path("p384.pem"));
        CHECK(k384 == NULL);
        crypto_ec_key_free(k384);
    }
    /* Signing needs the private half. */
    uint8_t sig[64];
    CHECK(crypto_ec_sign(pub, "x", 1, sig) != 0);
    crypto_ec_key_free(priv);
    crypto_ec_key_free(p8);
    crypto_ec_key_free(pub);
}

static void ec_sign_ours_verify_openssl(void)
{
    crypto_ec_key *priv = need_pem("key.pem");
    if (!priv)
        return;
    const char *msg = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxMjMifQ";
    uint8_t sig[64], der[80];
    CHECK_INT(crypto_ec_sign(priv, msg, strlen(msg), sig), 0);
    CHECK(crypto_ec_verify(priv, msg, strlen(msg), sig));
    CHECK_INT(write_all(tmp_path("msg"), msg, strlen(msg)), 0);
    size_t dl = sig_to_der(sig, der);
    CHECK_INT(write_all(tmp_path("sig.der"), der, dl), 0);
    CHECK_INT(sh("openssl dgst -sha256 -verify %s -signature %s %s >/dev/null 2>&1",
                 tmp_path("pub.pem"), tmp_path("sig.der"), tmp_path("msg")),
              0);
    /* openssl rejects the same signature over other data: the check can fail. */
    CHECK_INT(write_all(tmp_path("msg2"), "other", 5), 0);
    CHECK(sh("openssl dgst -sha256 -verify %s -signature %s %s >/dev/null 2>&1",
             tmp_path("pub.pem"), tmp_path("sig.der"), tmp_path("msg2")) != 0);
    crypto_ec_key_free(priv);
}

static void ec_verify_openssl_signature(void)
{
    crypto_ec_key *pub = need_pem("pub.pem");
    if (!pub)
        return;
    const char *msg = "payload signed by openssl";
    CHECK_INT(write_all(tmp_path("msg3"), msg, strlen(msg)), 0);
    CHECK_INT(sh("openssl dgst -sha256 -sign %s -out %s %s 2>/dev/null", tmp_path("key.pem"),
                 tmp_path("sig3.der"), tmp_path("msg3")),
              0);
    size_t dl;
    char *der = read_all(tmp_path("sig3.der"), &dl);
    uint8_t sig[64];
    CHECK(der && der_to_sig((uint8_t *)der, dl, sig) == 0);
    free(der);
    CHECK(crypto_ec_verify(pub, msg, strlen(msg), sig));
    /* From the JWK coordinates too. */
    uint8_t x[32], y[32];
    CHECK_INT(crypto_ec_key_xy(pub, x, y), 0);
    crypto_ec_key *fromxy = crypto_ec_key_from_xy(x, y);
    CHECK(fromxy != NULL);
    CHECK(!crypto_ec_key_is_private(fromxy));
    CHECK(crypto_ec_verify(fromxy, msg, strlen(msg), sig));

    /* Tampered data, tampered signature. */
    CHECK(!crypto_ec_verify(pub, "payload signed by opensSl", strlen(msg), sig));
    CHECK(!crypto_ec_verify(pub, msg, strlen(msg) - 1, sig));
    for (int i = 0; i < 64; i += 9) {
        uint8_t bad[64];
        memcpy(bad, sig, 64);
        bad[i] ^= 0x01;
        CHECK(!crypto_ec_verify(pub, msg, strlen(msg), bad));
    }
    /* r or s zero, or not below the group order n. */
    static const uint8_t n[32] = {0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17,
                                  0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51};
    uint8_t bad[64];
    memcpy(bad, sig, 64);
    memset(bad, 0, 32);
    CHECK(!crypto_ec_verify(pub, msg, strlen(msg), bad));
    memcpy(bad, sig, 64);
    memset(bad + 32, 0, 32);
    CHECK(!crypto_ec_verify(pub, msg, strlen(msg), bad));
    memcpy(bad, sig, 64);
    memcpy(bad + 32, n, 32);
    CHECK(!crypto_ec_verify(pub, msg, strlen(msg), bad));
    memset(bad, 0xff, 64);
    CHECK(!crypto_ec_verify(pub, msg, strlen(msg), bad));

    /* A signature by another key fails. */
    crypto_ec_key *other = NULL;
    if (sh("openssl ecparam -name prime256v1 -genkey -noout -out %s 2>/dev/null",
           tmp_path("other.pem")) == 0)
        other = load_pem(tmp_path("other.pem"));
    CHECK(other != NULL);
    if (other) {
        uint8_t osig[64];
        CHECK_INT(crypto_ec_sign(other, msg, strlen(msg), osig), 0);
        CHECK(crypto_ec_verify(other, msg, strlen(msg), osig));
        CHECK(!crypto_ec_verify(pub, msg, strlen(msg), osig));
    }
    crypto_ec_key_free(other);
    crypto_ec_key_free(fromxy);
    crypto_ec_key_free(pub);
}

static void ec_from_xy_off_curve(void)
{
    crypto_ec_key *pub = need_pem("pub.pem");
    if (!pub)
        return;
    uint8_t x[32], y[32];
    crypto_ec_key_xy(pub, x, y);
    y[31] ^= 1;
    CHECK(crypto_ec_key_from_xy(x, y) == NULL);
    uint8_t zero[32] = {0};
    CHECK(crypto_ec_key_from_xy(zero, zero) == NULL);
    crypto_ec_key_free(pub);
}

static void *ec_thread(void *arg)
{
    crypto_ec_key *key = arg;
    const char *msg = "concurrent";
    for (int i = 0; i < 20; i++) {
        uint8_t sig[64];
        if (crypto_ec_sign(key, msg, strlen(msg), sig) != 0)
            return (void *)1;
        if (!crypto_ec_verify(key, msg, strlen(msg), sig))
            return (void *)1;
    }
    return NULL;
}

static void ec_threads(void)
{
    crypto_ec_key *key = need_pem("key.pem");
    if (!key)
        return;
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, ec_thread, key);
    int errors = 0;
    for (int i = 0; i < 3; i++) {
        void *r;
        pthread_join(t[i], &r);
        errors += r != NULL;
    }
    CHECK_INT(errors, 0);
    crypto_ec_key_free(key);
}

static void ec_cleanup(void)
{
    CHECK_INT(sh("rm -rf %s", tmpdir), 0);
}

int main(void)
{
    test_suite = "crypto";
    alarm(60);
    RUN(b64url_vectors);
    RUN(b64url_strict);
    RUN(hex);
    RUN(hex_value);
    RUN(sha256_vectors);
    RUN(hmac_rfc4231);
    RUN(ct_equal);
    RUN(random_distinct);
    RUN(random_after_fork);
    RUN(random_threads);
    RUN(ec_setup);
    RUN(ec_load);
    RUN(ec_sign_ours_verify_openssl);
    RUN(ec_verify_openssl_signature);
    RUN(ec_from_xy_off_curve);
    RUN(ec_threads);
    RUN(ec_cleanup);
    return TEST_EXIT();
}
