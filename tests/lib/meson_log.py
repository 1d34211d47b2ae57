"""meson_log: tests/run's reading of a `meson test` run. Usage:
    python3 tests/lib/meson_log.py TESTLOG.json PREFIX LOGDIR COUNTS
For each test in meson's JSON log it relays the PASS/FAIL lines the program printed as
"PASS [PREFIX/suite/name] ...", keeps the whole output in LOGDIR, and shows the tail of a
failing one. A program that failed (or timed out) without printing a FAIL line counts as one
failure. Writes "PASSED FAILED" to COUNTS. Standard library only."""
import json
import os
import sys


def relay(test, prefix, logdir):
    """Prints one test's lines; returns (passed, failed)."""
    suite, _, name = test["name"].partition(" / ")
    suite = suite.split(":", 1)[-1]          # "suite:unit" -> "unit" (project:suite)
    label = f"{prefix}/{suite}/{name}" if prefix else f"{suite}/{name}"
    out = test.get("stdout") or ""
    if test.get("stderr"):
        out += test["stderr"]
    with open(os.path.join(logdir, label.replace("/", "_") + ".log"), "w") as f:
        f.write(out)
    lines = out.splitlines()
    passed = failed = 0
    for line in lines:
        if line.startswith("PASS ") or line.startswith("FAIL "):
            print(f"{line[:4]} [{label}] {line[5:]}")
            passed += line.startswith("PASS ")
            failed += line.startswith("FAIL ")
    ok = test["result"] in ("OK", "EXPECTEDFAIL", "SKIP")
    if not ok and failed == 0:
        print(f"FAIL [{label}] {test['result']}, exit status {test.get('returncode')}:")
        for line in lines[-30:]:
            print("    " + line)
        failed = 1
    elif failed:
        for line in [x for x in lines if not x.startswith("PASS ")][-40:]:
            print("    " + line)
    return passed, failed


def main():
    path, prefix, logdir, counts = sys.argv[1:5]
    passed = failed = 0
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    p, fl = relay(json.loads(line), prefix, logdir)
                    passed += p
                    failed += fl
    with open(counts, "w") as f:
        f.write(f"{passed} {failed}\n")


if __name__ == "__main__":
    main()
