-- auth_login.lua: wrk script for the login storm: POST /auth/login with the benchmark user's
-- credentials (BENCH_EMAIL, BENCH_PASSWORD).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"email":"%s","password":"%s"}', os.getenv("BENCH_EMAIL"),
                         os.getenv("BENCH_PASSWORD"))
