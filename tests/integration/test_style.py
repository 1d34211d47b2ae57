"""style: every C file of the tree follows .clang-format (Debian's clang-format 14), so that
one brace style holds wherever a change lands."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import procs  # noqa: E402
from check import main, test, true  # noqa: E402


@test
def tree_follows_clang_format():
    files = subprocess.run(["git", "ls-files", "*.c", "*.h"], cwd=procs.ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    true(len(files) > 50, f"only {len(files)} C files found")
    r = subprocess.run(["clang-format", "--dry-run", "-Werror", *files], cwd=procs.ROOT,
                       capture_output=True, text=True)
    off = sorted({line.split(":")[0] for line in r.stderr.splitlines() if ": error:" in line})
    true(r.returncode == 0, f"{len(off)} files differ from .clang-format (clang-format -i them): "
                            f"{' '.join(off[:10])}")


if __name__ == "__main__":
    main("style")
