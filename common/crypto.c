/* crypto: see crypto.h. */
