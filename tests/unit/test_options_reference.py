"""docs/options.md is what scripts/options_reference.py generates from the options classes."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_options_reference_is_up_to_date():
    res = subprocess.run([sys.executable, str(ROOT / "scripts/options_reference.py"), "--check"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


def test_every_job_option_has_help_a_user_can_act_on():
    sys.path.insert(0, str(ROOT / "scripts"))
    import options_reference

    text = options_reference.render()
    rows = [line for line in text.splitlines() if line.startswith("| `--")]
    assert len(rows) > 25
    assert all(len(line.rsplit("|", 2)[1].strip()) > 25 for line in rows), [
        line for line in rows if len(line.rsplit("|", 2)[1].strip()) <= 25]
