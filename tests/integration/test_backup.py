"""test_backup: deploy/backup and deploy/restore against the test PostgreSQL: every listed
database dumped (a real pg_dump custom archive, pg_restore can list it), dumps older than
BACKUP_KEEP_DAYS removed and younger ones kept, a restore brings the rows of the dump back
(rows added or removed since are undone), a database that does not exist yet is created, a
file that is not a dump is refused and leaves the database as it was."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import procs  # noqa: E402
from check import eq, main, test, true  # noqa: E402

BACKUP = os.path.join(procs.ROOT, "deploy", "backup")
RESTORE = os.path.join(procs.ROOT, "deploy", "restore")


class Ctx:
    pass


def setup():
    c = Ctx()
    c.tag = f"bk{os.getpid()}"
    c.dbs = [f"{c.tag}_auth", f"{c.tag}_payments"]
    c.tmp = tempfile.mkdtemp(prefix="suite-backup-")
    for db in c.dbs + [f"{c.tag}_new"]:
        procs.psql(f"DROP DATABASE IF EXISTS {db}")
    for db in c.dbs:
        procs.psql(f"CREATE DATABASE {db}")
        procs.psql("CREATE TABLE t (id int PRIMARY KEY, v text)", db=db)
        procs.psql("INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 100) g", db=db)
    return c


def teardown(c):
    for db in c.dbs + [f"{c.tag}_new"]:
        procs.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    shutil.rmtree(c.tmp, ignore_errors=True)


def run(cmd, **env):
    full = dict(os.environ, **env)
    return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=120)


def dumps(c, d):
    return sorted(f for f in os.listdir(d) if f.endswith(".dump"))


@test
def every_database_is_dumped_and_old_dumps_expire(c):
    d = os.path.join(c.tmp, "dumps")
    os.makedirs(d)
    old, young = os.path.join(d, "auth-20200101T000000Z.dump"), os.path.join(d, "auth-20200102T000000Z.dump")
    for path, days in ((old, 8), (young, 6)):
        with open(path, "w") as f:
            f.write("x")
        t = time.time() - days * 86400 - 60
        os.utime(path, (t, t))
    r = run([BACKUP, d], BACKUP_DATABASES=",".join(c.dbs), BACKUP_KEEP_DAYS="7")
    eq(r.returncode, 0, r.stderr)
    names = dumps(c, d)
    true(not os.path.exists(old), "the 8-day-old dump removed")
    true(os.path.exists(young), "the 6-day-old dump kept")
    for db in c.dbs:
        mine = [n for n in names if n.startswith(db + "-")]
        eq(len(mine), 1, f"{db}: {names}")
        listing = subprocess.run(["pg_restore", "--list", os.path.join(d, mine[0])],
                                 capture_output=True, text=True)
        eq(listing.returncode, 0, listing.stderr)
        true("TABLE DATA public t" in listing.stdout, f"the table's data is in the dump of {db}")
    true(not [n for n in os.listdir(d) if n.endswith((".part", ".err"))], "no partial files left")
    r = run([BACKUP, d], BACKUP_DATABASES="no_such_db_" + c.tag)
    eq(r.returncode, 1, "a dump that fails is an error")
    true("FAILED" in r.stderr, r.stderr)


@test
def restore_brings_the_dump_back(c):
    d = os.path.join(c.tmp, "restore")
    r = run([BACKUP, d], BACKUP_DATABASES=c.dbs[0])
    eq(r.returncode, 0, r.stderr)
    (dump,) = dumps(c, d)
    db = c.dbs[0]
    procs.psql("DELETE FROM t WHERE id <= 50", db=db)
    procs.psql("INSERT INTO t VALUES (1000, 'after the dump')", db=db)
    r = run([RESTORE, os.path.join(d, dump)])  # the database from the file's name
    eq(r.returncode, 0, r.stderr)
    eq(procs.psql("SELECT count(*), min(id), max(id) FROM t", db=db), "100|1|100", "the rows of the dump")
    # into another, new database
    r = run([RESTORE, os.path.join(d, dump), f"{c.tag}_new"])
    eq(r.returncode, 0, r.stderr)
    eq(procs.psql("SELECT count(*) FROM t", db=f"{c.tag}_new"), "100")
    # not a dump: refused, nothing touched
    bad = os.path.join(d, f"{db}-bad.dump")
    with open(bad, "w") as f:
        f.write("not a dump")
    r = run([RESTORE, bad])
    eq(r.returncode, 1, "a file that is not a dump")
    eq(procs.psql("SELECT count(*) FROM t", db=db), "100", "the database as it was")


if __name__ == "__main__":
    main("backup", setup, teardown)
