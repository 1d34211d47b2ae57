/* http_server: see http_server.h. */
