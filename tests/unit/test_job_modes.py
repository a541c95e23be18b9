"""Each job's --help shows only the modes it runs in, with its own words, and refuses another
mode in one line with exit 2 (a bad command line). Runs the jobs as a user does; nothing
else needs to run, since the mode is checked before anything is reached."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def job(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"pipelines.{module}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def mode_help(help_text: str) -> str:
    """The --mode entry of a --help: its lines up to the next option, joined."""
    entry = re.search(r"^  --mode .*?(?=^  -)", help_text, re.S | re.M)
    assert entry, help_text
    return " ".join(entry[0].split())


@pytest.mark.parametrize(("module", "modes", "own", "other"), [
    ("spool_job", "{drain,streaming}", "read up to the end offsets seen at start",
     "load every batch"),
    ("loader_job", "{drain,follow}", "load every batch that is READY now",
     "end offsets"),
])
def test_help_lists_exactly_the_jobs_modes_in_its_own_words(module, modes, own, other):
    res = job(module, "--help")
    assert res.returncode == 0, res.stderr
    entry = mode_help(res.stdout)
    assert entry.startswith(f"--mode {modes} ")
    assert own in entry and other not in entry
    assert "follow" not in entry if module == "spool_job" else "streaming" not in entry


@pytest.mark.parametrize(("module", "bad", "line"), [
    ("spool_job", "follow", "error: --mode=follow: the spool job runs in --mode=drain or "
     "--mode=streaming"),
    ("loader_job", "streaming", "error: --mode=streaming: the loader runs in --mode=drain or "
     "--mode=follow"),
    ("loader_job", "stream", "error: --mode=stream: the loader runs in --mode=drain or "
     "--mode=follow"),
])
def test_another_mode_is_one_line_naming_the_jobs_modes_and_exit_2(module, bad, line):
    res = job(module, f"--mode={bad}")
    assert (res.returncode, res.stderr.splitlines()) == (2, [line])
