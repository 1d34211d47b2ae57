"""test_env_docs: the services' environment variables and deploy/.env.example agree: every
variable a C source reads with config_*("NAME", ...) is listed there (as NAME= or #NAME=), and
every variable listed there is read somewhere. No build or server needed."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from check import main, test, true  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SOURCES = ["common", "gateway", "svc-auth", "svc-payments", "svc-storage", "worker-ocr", "workers"]
READ = re.compile(r'\bconfig_[a-z_]+\(\s*"([A-Z][A-Z0-9_]*)"')


def sources():
    for top in SOURCES:
        for d, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith((".c", ".h")):
                    with open(os.path.join(d, f), encoding="utf-8") as fh:
                        yield fh.read()


def read_in_code():
    names = set()
    for text in sources():
        names.update(READ.findall(text))
    return names


def documented():
    names = set()
    with open(os.path.join(ROOT, "deploy", ".env.example"), encoding="utf-8") as f:
        for line in f:
            m = re.match(r"#?([A-Z][A-Z0-9_]*)=", line)
            if m:
                names.add(m.group(1))
    return names


@test
def every_variable_read_is_documented():
    code = read_in_code()
    true(len(code) > 20, f"only {len(code)} config_* reads found: the pattern is stale")
    missing = sorted(code - documented())
    true(not missing, f"read by the code but not in deploy/.env.example: {missing}")


@test
def every_documented_variable_is_read():
    text = "\n".join(sources())
    unread = sorted(n for n in documented() if f'"{n}"' not in text)
    true(not unread, f"in deploy/.env.example but read nowhere: {unread}")


if __name__ == "__main__":
    main("env_docs")
