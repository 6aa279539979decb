"""bench/inprocess.py, the source of the in-process tables in bench/README.md, still runs
and reports every figure (a few calls per round: a check that it works, not a measure)."""

import re
import subprocess
import sys

from tests.conftest import ROOT

ROWS = [
    "bare FastAPI endpoint",
    "GET /test, valid token",
    "GET /test, forged signature",
    "POST /account/refresh",
    "the refresh service in a transaction, no HTTP",
    "a transaction with SELECT 1 alone",
    "our Python in a refresh (tokens, digests, audit line)",
    "POST /account/login",
    "one argon2 verify on the hasher's thread, same cost",
]


def test_the_in_process_bench_reports_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "inprocess.py"), "--calls", "40"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )

    assert result.returncode == 0, result.stderr
    figures = dict(re.findall(r"^\| (.+) \| ([0-9.]+) \|$", result.stdout, re.MULTILINE))
    assert list(figures) == ROWS, result.stdout
    assert all(float(micros) > 0 for micros in figures.values())
