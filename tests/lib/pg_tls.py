"""pg_tls: a throwaway PostgreSQL cluster that accepts TCP connections over TLS only, for the
DATABASE_URL tests. Certificates come from the openssl CLI: a CA, a server certificate for
localhost and 127.0.0.1 signed by it, and a second, unrelated CA. The cluster is a
procs.PgCluster (tests/fixtures/pg), then given ssl=on and a pg_hba.conf of hostssl lines
only (postgres: trust; role `app`: its password), and restarted. Standard library only."""
import os
import shutil
import subprocess
import urllib.parse

from procs import PgCluster, psql

PASSWORD = "s3cr@t/Pa55:w0rd"  # characters a URL must percent-encode


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _ca(d, name):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", f"/CN=suite test {name}", "-keyout", key, "-out", crt,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, crt


class TlsCluster(PgCluster):
    def __init__(self, port):
        super().__init__(port)
        try:
            self._tls()
        except Exception:
            self.remove()
            raise

    def _tls(self):
        certs = os.path.join(self.dir, "certs")
        os.mkdir(certs)
        ca_key, self.ca = _ca(certs, "ca")
        _, self.wrong_ca = _ca(certs, "other-ca")
        pgdata = os.path.join(self.dir, "data")
        key, crt = os.path.join(pgdata, "server.key"), os.path.join(pgdata, "server.crt")
        csr, ext = os.path.join(certs, "server.csr"), os.path.join(certs, "server.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                 "-keyout", key, "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key,
                 "-CAcreateserial", "-days", "1", "-extfile", ext, "-out", crt)
        hba = os.path.join(pgdata, "pg_hba.conf")
        with open(hba, "w") as f:
            f.write("local all all trust\n"
                    "hostssl all postgres 127.0.0.1/32 trust\n"
                    "hostssl all app 127.0.0.1/32 scram-sha-256\n")
        os.chmod(key, 0o600)
        if os.getuid() == 0:  # the fixture runs PostgreSQL as postgres: its files are its own
            for path in (key, crt, hba):
                shutil.chown(path, "postgres", "postgres")
        self.psql(f"ALTER SYSTEM SET ssl_cert_file = '{crt}'")
        self.psql(f"ALTER SYSTEM SET ssl_key_file = '{key}'")
        self.psql("ALTER SYSTEM SET ssl = on")
        self.stop()
        self.start()
        if self.psql("SHOW ssl") != "on":
            raise AssertionError("the TLS cluster did not turn ssl on")
        pw = PASSWORD.replace("'", "''")
        self.psql(f"CREATE ROLE app LOGIN PASSWORD '{pw}'")
        self.psql("CREATE DATABASE appdb OWNER app")

    def psql(self, sql, db="postgres"):
        """Runs sql as postgres over the cluster's Unix socket."""
        return psql(sql, db, port=self.port, host=self.dir, user="postgres")

    def url(self, sslmode, ca=None, host="localhost", db="appdb"):
        """A DATABASE_URL for role app, its password percent-encoded."""
        q = {"sslmode": sslmode}
        if ca:
            q["sslrootcert"] = ca
        return (f"postgres://app:{urllib.parse.quote(PASSWORD, safe='')}@{host}:{self.port}/"
                f"{db}?{urllib.parse.urlencode(q)}")
