"""Running the ``pcapstate`` command line in a child process, as a user would."""
from __future__ import annotations

import subprocess
import sys


def run_pcapstate(*args: str, check: bool = True, cwd=None) -> subprocess.CompletedProcess:
    """``python -m pcapstate ARGS``; with ``check``, a non-zero exit status fails the test with its stderr."""
    result = subprocess.run([sys.executable, "-m", "pcapstate", *args], capture_output=True, text=True, cwd=cwd)
    if check:
        assert result.returncode == 0, result.stderr
    return result
