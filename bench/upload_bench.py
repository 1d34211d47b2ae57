"""upload_bench: a 1 GiB upload to svc-storage, streamed to its volume while hashed: throughput
beside the same bytes copied with cp onto the same volume (the disk's own limit), and
svc-storage's resident memory sampled every 100 ms through the upload (it must stay flat:
the body is never held in memory). Real svc-auth and svc-storage on the PostgreSQL and Redis
in PG*/REDIS_*; curl as the client. BENCH_UPLOAD_MIB sets the size (1024)."""
import hashlib
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import procs  # noqa: E402
import storage_env as se  # noqa: E402

MIB = int(os.environ.get("BENCH_UPLOAD_MIB", "1024"))


def main():
    env = se.Env(tag="upbench")
    try:
        for i in (0, 1):
            env.storage[i].stop()
        st = env.start_storage(0, STORAGE_MAX_UPLOAD=f"{MIB + 1}m")
        email = "bench@example.com"
        env.register(email)
        token = env.login(email)
        src = os.path.join(env.tmp, "big.png")
        h = hashlib.sha256()
        with open(src, "wb") as f:
            head = b"\x89PNG\r\n\x1a\n" + os.urandom(1024 * 1024 - 8)
            f.write(head)
            h.update(head)
            block = os.urandom(1024 * 1024)
            for _ in range(MIB - 1):
                f.write(block)
                h.update(block)
        size = os.path.getsize(src)

        t0 = time.time()
        subprocess.run(["cp", src, os.path.join(env.dir, "cp-reference")], check=True)
        os.sync()
        cp_s = time.time() - t0
        os.unlink(os.path.join(env.dir, "cp-reference"))

        pid = st.p.pid
        samples, done = [], threading.Event()

        def sample():
            while not done.is_set():
                samples.append(procs.rss_kib(pid))
                time.sleep(0.1)
        before = procs.rss_kib(pid)
        th = threading.Thread(target=sample)
        th.start()
        t0 = time.time()
        r = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", "-T", src,
                            "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: image/png",
                            f"http://127.0.0.1:{env.ports[0]}/documents?filename=big.png"],
                           capture_output=True, text=True, timeout=900)
        os.sync()
        up_s = time.time() - t0
        done.set()
        th.join()
        status = r.stdout.rsplit("\n", 1)[-1]
        ok = status == "201" and h.hexdigest() in r.stdout
        print(f"upload of {size / 2**20:.0f} MiB: HTTP {status}, sha256 {'matches' if ok else 'WRONG'}")
        print(f"{'':28} {'seconds':>8} {'MiB/s':>8}")
        print(f"{'svc-storage (curl POST)':28} {up_s:8.2f} {size / 2**20 / up_s:8.0f}")
        print(f"{'cp to the same volume':28} {cp_s:8.2f} {size / 2**20 / cp_s:8.0f}")
        print(f"ratio svc-storage / cp: {cp_s / up_s:.2f}")
        print(f"svc-storage RSS: before {before / 1024:.1f} MiB, during max {max(samples) / 1024:.1f} MiB, "
              f"min {min(samples) / 1024:.1f} MiB ({len(samples)} samples)")
        return 0 if ok else 1
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main())
