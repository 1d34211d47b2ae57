/* redis: see redis.h. */
