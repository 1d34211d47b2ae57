"""check: the tiny harness of the Python test files. Each test prints "PASS suite/name" or
"FAIL suite/name: reason"; tests/run counts those lines. Only the standard library."""
import os
import sys
import traceback

_tests = []


def test(fn):
    _tests.append(fn)
    return fn


def main(suite, setup=None, teardown=None):
    """Runs the registered tests (or those named in argv) and exits 1 if any failed."""
    only = set(sys.argv[1:])
    failed = 0
    ctx = setup() if setup else None
    try:
        for fn in _tests:
            if only and fn.__name__ not in only:
                continue
            try:
                fn(ctx) if setup else fn()
                print(f"PASS {suite}/{fn.__name__}", flush=True)
            except Exception as e:  # noqa: BLE001 - a failing test is reported, not raised
                failed += 1
                detail = "".join(traceback.format_exception_only(type(e), e)).strip()
                tb = traceback.extract_tb(e.__traceback__)
                where = f"{os.path.basename(tb[-1].filename)}:{tb[-1].lineno}" if tb else ""
                print(f"FAIL {suite}/{fn.__name__}: {where} {detail}", flush=True)
    finally:
        if teardown:
            teardown(ctx)
    sys.exit(1 if failed else 0)


def eq(a, b, what=""):
    if a != b:
        raise AssertionError(f"{what} expected {b!r}, got {a!r}")


def true(cond, what=""):
    if not cond:
        raise AssertionError(what or "condition is false")
