/* metrics: see metrics.h. */
