"""The build installs what the services need: `meson install` puts each service's migrations
under DATADIR/suite/svc-NAME/migrations (the binary's default), and no binary carries a path
into the source tree (a build tree runs from the copy meson keeps next to the binary)."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import procs  # noqa: E402
from check import eq, main, test, true  # noqa: E402

SERVICES = ("svc-auth", "svc-payments")


def migrations(root):
    return sorted(f for f in os.listdir(root) if f.endswith(".sql"))


@test
def install_puts_binaries_and_migrations_under_the_prefix():
    with tempfile.TemporaryDirectory(prefix="suite-install-") as dest:
        r = subprocess.run(["meson", "install", "-C", procs.BUILD, "--no-rebuild", "--destdir",
                            dest], capture_output=True, text=True, timeout=300)
        eq(r.returncode, 0, f"meson install: {r.stdout[-1500:]}{r.stderr[-1500:]}")
        opts = subprocess.run(["meson", "introspect", "--buildoptions", procs.BUILD],
                              capture_output=True, text=True, check=True).stdout
        prefix = next(o["value"] for o in json.loads(opts) if o["name"] == "prefix")
        top = os.path.join(dest, prefix.lstrip("/"))
        for svc in SERVICES:
            true(os.access(os.path.join(top, "bin", svc), os.X_OK), f"{svc} not installed")
            src = os.path.join(procs.ROOT, svc, "migrations")
            got = os.path.join(top, "share", "suite", svc, "migrations")
            true(os.path.isdir(got), f"{got} missing")
            eq(migrations(got), migrations(src), f"{svc}'s installed migrations")
            for f in migrations(src):
                with open(os.path.join(src, f), "rb") as a, open(os.path.join(got, f), "rb") as b:
                    eq(b.read(), a.read(), f"installed {svc}/migrations/{f}")


@test
def build_tree_keeps_a_copy_beside_each_binary_and_no_source_path():
    for svc in SERVICES:
        src = os.path.join(procs.ROOT, svc, "migrations")
        eq(migrations(os.path.join(procs.BUILD, svc, "migrations")), migrations(src),
           f"{svc}'s migrations beside the binary")
        with open(procs.binary(f"{svc}/{svc}"), "rb") as f:
            exe = f.read()
        true(os.path.realpath(src).encode() not in exe, f"{svc} has {src} compiled in")


if __name__ == "__main__":
    main("install")
