"""Packaging for Spool. Workers on Flink or Dataflow get the code through --setup_file=setup.py."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements() -> list[str]:
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


setup(
    name="spool-elt",
    version="0.1.0",
    description="Multi-tenant ELT on Apache Beam: Kafka fat queue -> Parquet spool -> warehouses",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    # every package under these three, found rather than listed: a package missing here
    # would be missing on every remote worker (tests/unit/test_packaging.py installs it)
    packages=find_packages(include=["spool", "spool.*", "pipelines", "transforms"]),
    install_requires=requirements(),
    entry_points={"console_scripts": ["spool=spool.cli:main"]},
)
