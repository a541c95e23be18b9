"""Both jobs translate for Dataflow offline: the runner's own dry run (no account, nothing
submitted), the job graph's transforms Dataflow can run, and every project module the
pipelines use shipped in the package that --setup_file builds for the workers."""

from __future__ import annotations

import shutil
import sys
import tarfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2

ROOT = Path(__file__).resolve().parents[2]
# primitives Dataflow runs (Runner v2, batch and streaming); composites have their own URNs
DATAFLOW_URNS = {
    "", "beam:transform:generic_composite:v1", "beam:transform:impulse:v1",
    "beam:transform:pardo:v1", "beam:transform:group_by_key:v1", "beam:transform:flatten:v1",
    "beam:transform:window_into:v1", "beam:transform:reshuffle:v1",
    "beam:transform:combine_per_key:v1", "beam:transform:combine_globally:v1",
    "beam:transform:sdf_process_sized_element_and_restrictions:v1",
    "beam:transform:sdf_pair_with_restriction:v1",
    "beam:transform:sdf_split_and_size_restrictions:v1",
}
PROJECT_PACKAGES = ("spool", "pipelines", "transforms")


def dataflow_options(*extra: str) -> PipelineOptions:
    return PipelineOptions([
        "--runner=DataflowRunner", "--project=spool-example-123", "--region=us-central1",
        "--temp_location=gs://spool-example-bucket/tmp",
        "--staging_location=gs://spool-example-bucket/staging",
        f"--setup_file={ROOT / 'setup.py'}", "--dry_run=True", "--ledger_dsn=env:LEDGER",
        "--spool_location=s3://spool-example/spool", *extra])


def build_spool_job(options):
    from pipelines import spool_job

    pipeline = beam.Pipeline(options=options)
    spool_job.build(pipeline, options, "env:LEDGER", "s3://spool-example/spool",
                    "broker:9092")
    return pipeline


def build_loader(options):
    from pipelines import loader_job

    return loader_job.build(beam.Pipeline(options=options), options, "env:LEDGER")


def translate(pipeline) -> beam_runner_api_pb2.Pipeline:
    result = pipeline.run()  # DataflowRunner with --dry_run: translated, not submitted
    assert result.state == "DONE"
    return result.job.proto_pipeline


def problems(proto: beam_runner_api_pb2.Pipeline, used_modules: set[str]) -> list[str]:
    """What would keep this job graph from running on Dataflow workers."""
    found = []
    for t in proto.components.transforms.values():
        # composites are run through their parts, and a composite whose output is its input
        # (Create's MaybeReshuffle of one element) is nothing to run; the rest are primitives
        identity = set(t.inputs.values()) == set(t.outputs.values())
        if not t.subtransforms and not identity and t.spec.urn not in DATAFLOW_URNS:
            found.append(f"transform {t.unique_name!r}: {t.spec.urn} does not run on Dataflow")
    staged = []
    for env in proto.components.environments.values():
        for dep in env.dependencies:
            payload = beam_runner_api_pb2.ArtifactFilePayload.FromString(dep.type_payload)
            if payload.path.endswith(".tar.gz"):
                staged.append(payload.path)
    if not staged:
        return [*found, "no package of the project is staged: is --setup_file set?"]
    with tarfile.open(staged[0]) as tar:
        shipped = {"/".join(Path(n).parts[1:]) for n in tar.getnames()}
    for module in sorted(used_modules):
        rel = module.replace(".", "/")
        if f"{rel}.py" not in shipped and f"{rel}/__init__.py" not in shipped:
            found.append(f"module {module} is not in the package setup.py builds")
    return found


def project_modules() -> set[str]:
    return {name for name, mod in sys.modules.items()
            if name.split(".")[0] in PROJECT_PACKAGES and getattr(mod, "__file__", None)}


@pytest.mark.parametrize("job, extra", [
    ("spool", ["--mode=drain"]),
    ("spool", ["--mode=streaming", "--streaming"]),
    ("loader", ["--mode=drain"]),
    ("loader", ["--mode=follow", "--streaming"]),
], ids=["spool-drain", "spool-streaming", "loader-drain", "loader-follow"])
def test_both_jobs_translate_for_dataflow(job, extra):
    options = dataflow_options(*extra)
    pipeline = build_spool_job(options) if job == "spool" else build_loader(options)
    assert problems(translate(pipeline), project_modules()) == []


def test_the_check_catches_a_transform_dataflow_cannot_run():
    from apache_beam.testing.test_stream import TestStream

    options = dataflow_options("--mode=streaming", "--streaming")
    pipeline = build_spool_job(options)
    _ = pipeline | "Replay" >> TestStream().add_elements([b"x"])
    found = problems(translate(pipeline), project_modules())
    assert any("teststream" in p for p in found), found


def test_the_check_catches_a_module_missing_from_setup_py():
    # setup.py finds packages by their __init__.py; a folder without one still imports (a
    # namespace package) on the launcher, but is not in the package workers install
    package = ROOT / "spool" / "zz_unlisted_subpackage"
    package.mkdir()
    try:
        (package / "labels.py").write_text("LABEL = 'not shipped'\n")
        import importlib

        importlib.invalidate_caches()
        importlib.import_module("spool.zz_unlisted_subpackage.labels")
        options = dataflow_options("--mode=drain")
        found = problems(translate(build_spool_job(options)), project_modules())
        assert "module spool.zz_unlisted_subpackage.labels is not in the package setup.py " \
            "builds" in found
    finally:
        sys.modules.pop("spool.zz_unlisted_subpackage.labels", None)
        sys.modules.pop("spool.zz_unlisted_subpackage", None)
        shutil.rmtree(package)
