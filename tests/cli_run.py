"""Run the installed `jwt-auth-api` command as an operator does."""

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

COMMAND = str(Path(sys.executable).parent / "jwt-auth-api")


def run_command(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
