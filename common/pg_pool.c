/* pg_pool: see pg_pool.h. */
