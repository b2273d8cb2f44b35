"""The examples run (those that can run offline) and at least compile."""

from __future__ import annotations

import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_example_compiles(path):
    """Every example is valid Python."""
    py_compile.compile(str(path), doraise=True)


@pytest.mark.parametrize(
    ("script", "args", "expect"),
    [
        ("quickstart.py", [], "recording: http://127.0.0.1:"),
        ("bulk_dialer.py", ["12"], "answered by"),
    ],
)
def test_offline_examples_run(script, args, expect, monkeypatch):
    """The examples that fall back to the emulator run to completion."""
    monkeypatch.delenv("SIGNALWIRE_PROJECT_ID", raising=False)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert expect in proc.stdout
