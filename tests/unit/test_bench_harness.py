"""The benchmark harness: cases take turns, and figures are medians with their spread."""

import pytest

from benchmarks import harness


def test_cases_take_turns_and_the_order_reverses_every_other_round():
    calls = []

    def case(name):
        def run(r):
            calls.append((name, r))
            return {"seconds": float(len(calls))}
        return run

    got = harness.interleave({"a": case("a"), "b": case("b"), "c": case("c")}, runs=3,
                             log=lambda *_: None)
    assert calls == [("a", 0), ("b", 0), ("c", 0), ("c", 1), ("b", 1), ("a", 1),
                     ("a", 2), ("b", 2), ("c", 2)]
    assert [f["seconds"] for f in got["a"]] == [1.0, 6.0, 7.0]


def test_a_summary_gives_median_min_max_and_the_ratio_of_medians():
    summary = {"x": harness.summarise([{"rate": 10.0}, {"rate": 30.0}, {"rate": 12.0}]),
               "y": harness.summarise([{"rate": 6.0}, {"rate": 5.0}, {"rate": 40.0}])}
    assert summary["x"]["rate"] == {"median": 12.0, "min": 10.0, "max": 30.0,
                                    "runs": [10.0, 30.0, 12.0]}
    assert harness.ratio(summary, "x", "y", "rate") == 2.0


def test_no_runs_is_refused():
    with pytest.raises(ValueError, match="runs"):
        harness.interleave({"a": lambda r: {}}, runs=0)
