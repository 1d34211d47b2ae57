#!/usr/bin/env python3
"""test_pg_pool: common/pg_pool.c against real PostgreSQL servers.

Each test runs tests/pg_driver (a C program using the pool on a uv loop) with one case and
checks its PASS line; the driver's own output is shown indented. The dev server (PGHOST PGPORT
PGUSER) holds a database created for this run; the outage test starts a cluster of its own on
a port in 21000-21099 with tests/fixtures/pg, which the driver stops and restarts. Everything
started here is stopped and removed at the end, also on failure."""
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import procs  # noqa: E402
from check import eq, main, test, true  # noqa: E402
from pg_tls import PASSWORD, TlsCluster  # noqa: E402
from procs import psql  # noqa: E402

BUILD = os.environ.get("SUITE_BUILD", os.path.join(ROOT, "build"))
DRIVER = os.path.join(BUILD, "tests", "pg_driver")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "pg")
PGHOST = os.environ.get("PGHOST", "127.0.0.1")
PGPORT = os.environ.get("PGPORT", "54320")
PGUSER = os.environ.get("PGUSER", "postgres")
DB = f"pgpool_test_{os.getpid()}"


def free_port(exclude=()):
    """A port of 21000-21099 on which nothing listens."""
    return procs.free_port(21000, 21099, avoid=exclude)


def driver_env(db, port=None):
    # the migration tests count the "migration applied" lines: info level whatever tests/run sets
    env = dict(os.environ, PGHOST=PGHOST, PGPORT=str(port or PGPORT), PGUSER=PGUSER,
               PGDATABASE=db, LOG_LEVEL="info")
    env.pop("PGPASSWORD", None)
    return env


def show(out):
    for line in out.splitlines():
        print("    " + line)


def run_case(case, *args, timeout=60, db=None, port=None, env=None):
    """Runs one driver case; fails unless it printed PASS pg/case and exited 0."""
    try:
        p = subprocess.run([DRIVER, case, *map(str, args)], env=env or driver_env(db or DB, port),
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        show((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes)
             else (e.stdout or ""))
        raise AssertionError(f"driver {case} still running after {timeout} s (killed)")
    show(p.stdout)
    if p.returncode != 0 and p.stderr.strip():
        show(p.stderr[-2000:])
    true(f"PASS pg/{case}\n" in p.stdout and "FAIL" not in p.stdout,
         f"driver case {case} did not pass (exit {p.returncode})")
    eq(p.returncode, 0, f"driver {case} exit status")
    return p.stdout


def setup():
    true(os.access(DRIVER, os.X_OK), f"{DRIVER} not built")
    psql(f'DROP DATABASE IF EXISTS "{DB}"')
    psql(f'CREATE DATABASE "{DB}"')
    return {}


def teardown(_ctx):
    try:
        psql(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    except Exception as e:  # noqa: BLE001 - report, do not mask the test results
        print(f"    teardown: {e}")


@test
def options_from_environment(_ctx):
    run_case("opts")


@test
def query_params_and_null(_ctx):
    run_case("basic")


@test
def sql_errors_have_sqlstate(_ctx):
    run_case("sql_error")


@test
def transactions_commit_rollback(_ctx):
    run_case("tx")


@test
def statement_timeout(_ctx):
    run_case("timeout")


@test
def fifty_queries_on_four_connections(_ctx):
    run_case("concurrency")


@test
def queue_full_is_busy_at_once(_ctx):
    run_case("queue_full")


@test
def queue_wait_times_out_busy(_ctx):
    run_case("queue_timeout")


@test
def loop_stays_responsive_during_pg_sleep(_ctx):
    run_case("responsive")


@test
def host_name_resolved_asynchronously(_ctx):
    run_case("resolve")


@test
def no_server_fails_fast(_ctx):
    run_case("down_at_start", free_port())


@test
def free_fails_pending_queries(_ctx):
    run_case("free")


@test
def abandoned_transaction_rolled_back_after_30s(_ctx):
    run_case("tx_guard", timeout=90)


@contextlib.contextmanager
def own_cluster(prefix):
    """A cluster of its own (tests/fixtures/pg) for a with block: (its directory, its port);
    killed and removed on leaving the block."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    os.chmod(tmp, 0o755)
    data = os.path.join(tmp, "pg")
    port = free_port()
    try:
        subprocess.run([FIXTURE, "start", data, str(port)], check=True, timeout=120)
        yield data, port
    finally:
        subprocess.run([FIXTURE, "kill", data], timeout=60, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@test
def outage_fails_fast_then_recovers(_ctx):
    with own_cluster("pgpool-cluster-") as (data, port):
        run_case("outage", FIXTURE, data, port, timeout=120, db="postgres", port=port)


def as_postgres(path):
    """Gives a file of a cluster to the user the fixture runs PostgreSQL as."""
    if os.getuid() == 0:
        shutil.chown(path, "postgres", "postgres")


@test
def ssl_refused_reconnects_on_new_socket(_ctx):
    with own_cluster("pgpool-ssl-") as (data, port):
        pgdata = os.path.join(data, "data")
        crt, key = os.path.join(pgdata, "test.crt"), os.path.join(pgdata, "test.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", key, "-out", crt],
                       check=True, capture_output=True, timeout=60)
        os.chmod(key, 0o600)
        with open(os.path.join(pgdata, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\n"
                    "hostssl all all 127.0.0.1/32 reject\n"
                    "hostnossl all all 127.0.0.1/32 trust\n")
        for path in (crt, key, os.path.join(pgdata, "pg_hba.conf")):
            as_postgres(path)
        psql(f"ALTER SYSTEM SET ssl_cert_file = '{crt}'", port=port)
        psql(f"ALTER SYSTEM SET ssl_key_file = '{key}'", port=port)
        psql("ALTER SYSTEM SET ssl = on", port=port)
        subprocess.run([FIXTURE, "stop", data], check=True, timeout=60)
        subprocess.run([FIXTURE, "start", data, str(port)], check=True, timeout=120)
        eq(psql("SHOW ssl", port=port), "on", "server ssl")
        run_case("ssl_fallback", port, db="postgres", port=port)


@test
def database_url_file_wins_over_pg_variables(_ctx):
    run_case("url_opts")


def url_env(database_url):
    """The driver's environment with DATABASE_URL and none of the PG* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(DATABASE_URL=database_url, LOG_LEVEL="info")
    return env


def no_password(out):
    for secret in (PASSWORD, urllib.parse.quote(PASSWORD, safe="")):
        true(secret not in out, "the password appears in the output")


@test
def database_url_over_tls(_ctx):
    """verify-full with the right CA and require connect; a wrong CA and a plain connection to
    a hostssl-only server are refused, each failure on one log line naming it."""
    cluster = TlsCluster(free_port())
    try:
        for url in (cluster.url("verify-full", cluster.ca),
                    cluster.url("verify-full", cluster.ca, host="127.0.0.1"),
                    cluster.url("require")):
            no_password(run_case("url", "ssl", env=url_env(url)))
        eq(cluster.psql("SELECT count(*) FROM schema_migrations", db="appdb"), "0",
           "the migrator's table, made over TLS")
        for url, why in ((cluster.url("verify-full", cluster.wrong_ca), "certificate verify failed"),
                         (cluster.url("disable"), "no pg_hba.conf entry")):
            out = run_case("url", "refused", env=url_env(url))
            no_password(out)
            fails = [json.loads(line) for line in out.splitlines()
                     if line.startswith("{") and '"postgres connect failed"' in line]
            true(len(fails) >= 1, "the refusal is logged")
            for f in fails:
                true(why in f["error"], f"log line names the failure ({why}): {f['error']!r}")
                true("\n" not in f["error"], "one line")
    finally:
        cluster.remove()


MIGRATIONS = {
    "001_log.sql": "CREATE TABLE mig_log (file text NOT NULL);\n"
                   "INSERT INTO mig_log VALUES ('001');\n"
                   "SELECT pg_sleep(0.5); -- keeps the lock while the other process waits\n",
    "002_more.sql": "INSERT INTO mig_log VALUES ('002');\nCREATE TABLE two (id int PRIMARY KEY);\n",
    "010_last.sql": "INSERT INTO mig_log VALUES ('010');\n",
    "README": "not a migration: ignored\n",
}


def migration_dir(files):
    d = tempfile.mkdtemp(prefix="pgpool-mig-")
    for name, text in files.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    return d


@test
def migrations_concurrent_apply_once(_ctx):
    db = f"pgpool_mig_{os.getpid()}"
    d = migration_dir(MIGRATIONS)
    procs = []
    try:
        psql(f'CREATE DATABASE "{db}"')
        procs = [subprocess.Popen([DRIVER, "migrate", d, "0"], env=driver_env(db),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=60)[0] for p in procs]
        for out, p in zip(outs, procs):
            show(out)
            true("PASS pg/migrate" in out and p.returncode == 0, "a migrator failed")
        # both logged their run; together they applied each file once
        applied = sum(out.count('"migration applied"') for out in outs)
        eq(applied, 3, "files applied by the two processes together")
        eq(psql("SELECT string_agg(file || ':' || n, ',' ORDER BY file) FROM "
                "(SELECT file, count(*) n FROM mig_log GROUP BY file) s", db=db),
           "001:1,002:1,010:1", "rows written by the migrations")
        eq(psql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations", db=db),
           "001_log,002_more,010_last", "recorded versions")
        before = psql("SELECT string_agg(applied_at::text, ',' ORDER BY version) "
                      "FROM schema_migrations", db=db)
        out = run_case("migrate", d, 0, db=db)  # a second run applies nothing
        eq(out.count('"migration applied"'), 0, "files applied by the second run")
        eq(psql("SELECT count(*) FROM mig_log", db=db), "3", "rows after the second run")
        eq(psql("SELECT string_agg(applied_at::text, ',' ORDER BY version) "
                "FROM schema_migrations", db=db), before, "applied_at after the second run")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(d, ignore_errors=True)
        psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@test
def migration_failure_rolls_back_that_file(_ctx):
    db = f"pgpool_migfail_{os.getpid()}"
    files = dict(MIGRATIONS)
    files["020_bad.sql"] = "INSERT INTO mig_log VALUES ('020');\nSELECT no_such_column FROM two;\n"
    files["030_after.sql"] = "INSERT INTO mig_log VALUES ('030');\n"
    d = migration_dir(files)
    try:
        psql(f'CREATE DATABASE "{db}"')
        out = run_case("migrate", d, -1, db=db)
        true('"migration failed"' in out and "020_bad" in out, "the failure is logged with its file")
        eq(psql("SELECT string_agg(file, ',' ORDER BY file) FROM mig_log", db=db),
           "001,002,010", "rows: 020 rolled back, 030 not run")
        eq(psql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations", db=db),
           "001_log,002_more,010_last", "recorded versions")
    finally:
        shutil.rmtree(d, ignore_errors=True)
        psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main("pg_pool", setup, teardown)
