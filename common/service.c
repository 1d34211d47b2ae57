/* service: see service.h. */
