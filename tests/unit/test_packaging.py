"""The package that ``--setup_file`` ships to remote workers installs where Spool is not.

Beam's stager builds the sdist the same way for every runner (Dataflow, Flink, the local job
server); a worker then pip-installs it. A file ``setup.py`` reads but the sdist leaves out
breaks every job on every remote worker, while the launcher, which runs from the checkout,
never notices.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from apache_beam.runners.portability.stager import Stager

ROOT = Path(__file__).resolve().parents[2]


def staged_sdist(tmp_path: Path) -> str:
    """The sdist Beam's stager builds, from the project's files alone: a checkout's leftover
    ``*.egg-info`` lists files of earlier builds, which would hide one the sdist leaves out."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    src = tmp_path / "src"
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    return Stager._build_setup_package(str(src / "setup.py"), str(tmp_path / "dist"))


def test_the_staged_sdist_installs_into_an_empty_venv(tmp_path):
    sdist = staged_sdist(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # as a worker installs it (an isolated build with the build requirements pyproject.toml
    # names), but without Spool's dependencies: those are the worker image's business, and
    # what this proves is that setup.py runs from the sdist alone
    res = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          "--cache-dir", str(ROOT / "var" / "cache" / "pip"), "--no-deps",
                          sdist],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    meta = subprocess.run([str(py), "-m", "pip", "show", "-f", "spool-elt"],
                          capture_output=True, text=True, check=True).stdout
    requires = next(ln for ln in meta.splitlines() if ln.startswith("Requires:"))
    assert "apache-beam" in requires and "kafka-python" in requires
    for module in ("spool/ledger/claims.py", "transforms/kafka_read.py",
                   "pipelines/spool_job.py"):
        assert module in meta, f"{module} is not installed from the sdist"


def test_every_project_package_is_in_the_sdist(tmp_path):
    sdist = staged_sdist(tmp_path)
    with tarfile.open(sdist) as tar:
        shipped = {"/".join(Path(n).parts[1:]) for n in tar.getnames()}
    packages = {str(p.parent.relative_to(ROOT)) for top in ("spool", "transforms", "pipelines")
                for p in (ROOT / top).rglob("__init__.py")}
    missing = sorted(p for p in packages if f"{p}/__init__.py" not in shipped)
    assert not missing, f"packages setup.py does not ship: {missing}"
