"""auth_util: helpers of the svc-auth tests and benchmark (standard library only): starting
and stopping svc-auth instances and a private redis-server (HTTP and psql: tests/lib/procs), and JWT
pieces done independently of our C code (base64url, r||s <-> DER, the openssl CLI)."""
import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import procs  # noqa: E402
from procs import psql, request  # noqa: E402,F401 - U.request, U.psql for the suites

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("SUITE_BUILD", os.path.join(ROOT, "build"))
PGHOST = os.environ.get("PGHOST", "127.0.0.1")
PGPORT = os.environ.get("PGPORT", "54320")
PGUSER = os.environ.get("PGUSER", "postgres")
# Test instances use ports 24000-24999: BASE_PORT..+3 and +500..+502 (+ 24990-24991: bench).
BASE_PORT = 24000 + (os.getpid() % 120) * 4


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_dec(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_parts(token):
    h, p, s = token.split(".")
    return json.loads(b64u_dec(h)), json.loads(b64u_dec(p)), b64u_dec(s)


def rs_to_der(sig):
    """JWS r||s (64 bytes) -> DER ECDSA-Sig-Value."""
    def der_int(b):
        b = b.lstrip(b"\x00") or b"\x00"
        if b[0] & 0x80:
            b = b"\x00" + b
        return b"\x02" + bytes([len(b)]) + b
    body = der_int(sig[:32]) + der_int(sig[32:])
    return b"\x30" + bytes([len(body)]) + body


def der_to_rs(der):
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        v = der[i + 2:i + 2 + n]
        out += int.from_bytes(v, "big").to_bytes(32, "big")
        i += 2 + n
    return out


def jwk_to_pem(jwk):
    """P-256 public JWK -> SubjectPublicKeyInfo PEM (fixed DER prefix + 04||x||y)."""
    prefix = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")
    der = prefix + b"\x04" + b64u_dec(jwk["x"]) + b64u_dec(jwk["y"])
    body = base64.b64encode(der).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"


def thumbprint(jwk):
    canon = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]},
                       separators=(",", ":"), sort_keys=True)
    return b64u(hashlib.sha256(canon.encode()).digest())


def openssl_genkey(path):
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", path],
                   check=True, capture_output=True, timeout=20)


def openssl_public_jwk(pem_path):
    der = subprocess.run(["openssl", "ec", "-in", pem_path, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True, timeout=20).stdout
    pt = der[-65:]
    return {"kty": "EC", "crv": "P-256", "x": b64u(pt[1:33]), "y": b64u(pt[33:])}


def openssl_sign_jwt(key_path, header, claims):
    si = b64u(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        b64u(json.dumps(claims, separators=(",", ":")).encode())
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_path], input=si.encode(),
                         check=True, capture_output=True, timeout=20).stdout
    return si + "." + b64u(der_to_rs(der))


def openssl_verify_jwt(token, pub_pem):
    h, p, s = token.split(".")
    with tempfile.TemporaryDirectory() as d:
        pem = os.path.join(d, "pub.pem")
        sig = os.path.join(d, "sig.der")
        with open(pem, "w") as f:
            f.write(pub_pem)
        with open(sig, "wb") as f:
            f.write(rs_to_der(b64u_dec(s)))
        r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", pem, "-signature", sig],
                           input=(h + "." + p).encode(), capture_output=True, timeout=20)
        return r.returncode == 0 and b"Verified OK" in r.stdout


def bearer(token):
    return {"Authorization": "Bearer " + token}


def wait_port(port, seconds=15, proc=None):
    """procs.wait_port as a truth value: False when proc exits first or nothing listens."""
    try:
        procs.wait_port(port, timeout=seconds, proc=proc)
        return True
    except (RuntimeError, TimeoutError):
        return False


class RedisServer(procs.RedisServer):
    """A private Redis (no persistence) so FLUSHALL touches nobody else."""

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port)] + list(args),
                              capture_output=True, text=True, timeout=10).stdout.strip()


class AuthInstance:
    def __init__(self, port, env, log_path=None):
        self.port = port
        e = dict(os.environ)
        e.update({"PORT": str(port), "HOST": "127.0.0.1", "LOG_LEVEL": "warn"})
        e.update(env)
        self.log = open(log_path or os.devnull, "w")
        self.proc = subprocess.Popen([os.path.join(BUILD, "svc-auth", "svc-auth")], env=e,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_port(port, 20, self.proc):
            self.stop()
            raise RuntimeError(f"svc-auth on {port} did not start")

    def stop(self, sig=signal.SIGTERM, timeout=10):
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(sig)
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait(timeout=10)
        self.log.close()
        return rc
