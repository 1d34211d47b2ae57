/* p256_cost: what one full TLS 1.2 handshake costs the server in mbedTLS public-key
 * operations, measured on this machine: an ECDSA P-256 signature (the ServerKeyExchange) and
 * an ephemeral X25519 or P-256 key exchange (key generation + shared secret). Prints the
 * per-operation times and the handshakes per second per core they allow. bench/gateway.sh
 * runs it next to the gateway's measured full-handshake rate. Times are the process's CPU
 * time, so that a busy machine does not inflate them. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdh.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/entropy.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static mbedtls_ctr_drbg_context drbg;

/* The server's share of an ECDHE exchange: a fresh context (as each handshake has), its key
 * pair and the shared secret with the client's public key. The client's half is made outside
 * the timed part. */
static double ecdh_ms(mbedtls_ecp_group_id gid, int n)
{
    mbedtls_ecdh_context srv, cli;
    unsigned char params[256], pub[256], secret[128];
    size_t plen, len, slen;
    double total = 0;
    for (int i = 0; i < n; i++) {
        mbedtls_ecdh_init(&srv);
        mbedtls_ecdh_init(&cli);
        double t0 = now();
        mbedtls_ecdh_setup(&srv, gid);
        mbedtls_ecdh_make_params(&srv, &plen, params, sizeof params, mbedtls_ctr_drbg_random,
                                 &drbg);
        total += now() - t0;
        const unsigned char *p = params;
        mbedtls_ecdh_setup(&cli, gid);
        mbedtls_ecdh_read_params(&cli, &p, params + plen);
        mbedtls_ecdh_make_public(&cli, &len, pub, sizeof pub, mbedtls_ctr_drbg_random, &drbg);
        t0 = now();
        mbedtls_ecdh_read_public(&srv, pub, len);
        mbedtls_ecdh_calc_secret(&srv, &slen, secret, sizeof secret, mbedtls_ctr_drbg_random,
                                 &drbg);
        total += now() - t0;
        mbedtls_ecdh_free(&srv);
        mbedtls_ecdh_free(&cli);
    }
    return total * 1000.0 / n;
}

int main(void)
{
    mbedtls_entropy_context ent;
    mbedtls_entropy_init(&ent);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, (const unsigned char *)"p256", 4);
    mbedtls_ecdsa_context key;
    mbedtls_ecdsa_init(&key);
    mbedtls_ecdsa_genkey(&key, MBEDTLS_ECP_DP_SECP256R1, mbedtls_ctr_drbg_random, &drbg);
    unsigned char hash[32], sig[MBEDTLS_ECDSA_MAX_LEN];
    memset(hash, 7, sizeof hash);
    size_t slen;
    int n = 200;
    double t0 = now();
    for (int i = 0; i < n; i++)
        mbedtls_ecdsa_write_signature(&key, MBEDTLS_MD_SHA256, hash, 32, sig, &slen,
                                      mbedtls_ctr_drbg_random, &drbg);
    double sign = (now() - t0) * 1000.0 / n;
    double x25519 = ecdh_ms(MBEDTLS_ECP_DP_CURVE25519, n);
    double p256 = ecdh_ms(MBEDTLS_ECP_DP_SECP256R1, n);
    printf("ecdsa_p256_sign_ms %.3f\n", sign);
    printf("ecdhe_x25519_server_ms %.3f\n", x25519);
    printf("ecdhe_p256_server_ms %.3f\n", p256);
    printf("handshakes_per_core_x25519 %.1f\n", 1000.0 / (sign + x25519));
    printf("handshakes_per_core_p256 %.1f\n", 1000.0 / (sign + p256));
    mbedtls_ecdsa_free(&key);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&ent);
    return 0;
}
