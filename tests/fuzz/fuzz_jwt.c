/* fuzz_jwt: libFuzzer target for the JWT parser/verifier and the JWKS parser (common/jwt.c).
 * Any input must be refused or accepted without a crash, a leak or undefined behaviour. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "jwt.h"

static const char FUZZ_KEY[] = "-----BEGIN EC PRIVATE KEY-----\n"
                               "MHcCAQEEID+E9XRFkFJh2FosxRYNCWrajQ++xqzHUgol4WGGro91oAoGCCqGSM49\n"
                               "AwEHoUQDQgAET6i6Cmd5Z3Ukw8nZ798GZq6uvktlnZLRcSCt5JmqL9mTZE0WLcqa\n"
                               "WFXvPOEU9uLja/EFCxy6rTVPGvKtmIGFKA==\n"
                               "-----END EC PRIVATE KEY-----\n";

static jwt_keyset *fuzz_keys;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fuzz_keys) {
        crypto_init();
        fuzz_keys = jwt_keyset_new();
        jwt_keyset_add_pem(fuzz_keys, FUZZ_KEY, strlen(FUZZ_KEY));
    }
    jwt_expect ex = {
        .typ = "at+jwt", .iss = "suite-auth", .aud = "suite", .now = 1700000000, .leeway = 30};
    json_t *claims = NULL;
    if (jwt_verify(fuzz_keys, (const char *)data, size, &ex, &claims) == JWT_OK)
        json_decref(claims);
    ex.typ = NULL;
    ex.iss = NULL;
    ex.aud = NULL;
    if (jwt_decode(fuzz_keys, (const char *)data, size, &ex, &claims) == JWT_OK)
        json_decref(claims);
    jwt_keyset *ks = jwt_keyset_new();
    jwt_keyset_add_jwks(ks, (const char *)data, size);
    jwt_keyset_free(ks);
    return 0;
}
