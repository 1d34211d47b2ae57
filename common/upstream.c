/* upstream: see upstream.h. */
