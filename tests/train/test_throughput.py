"""The training-cost measurement is one library function (train/throughput.py) that
bench/train_throughput.py and train/experiments.py both call (issue 22 item 7)."""

import json

import pytest

from train import experiments, throughput


def test_unknown_runs_are_refused_before_any_model_is_built():
    with pytest.raises(ValueError, match=r"unknown \[.nope.\]; choose from backbone, glat"):
        throughput.measure("cnn6_tiny", variants=["glat", "nope"])


def test_experiments_call_the_measurement_once_and_keep_its_result(tmp_path, monkeypatch):
    """In-process: the measurement (minutes of timed training steps) stands in by one that
    records its call, so what experiments asks for and keeps is checked."""
    calls = []
    result = {"seconds_per_step": {"backbone": 0.5, "glat": 0.75}}

    def measure(*args, **kwargs):
        calls.append((args, kwargs))
        return result

    monkeypatch.setattr(throughput, "measure", measure)
    config = {"backbone": "cnn6_tiny", "backbone_kwargs": {"n_mels": 32}, "batch_size": 4,
              "n_clips": 2, "tau": 0.5, "num_classes": 3, "out": str(tmp_path / "runs")}
    first = experiments.measure_costs(config)
    assert first == experiments.measure_costs(config) == result
    assert len(calls) == 1  # the second answer is the file the first one wrote
    args, kwargs = calls[0]
    assert args == ("cnn6_tiny", {"n_mels": 32}, 4)
    assert kwargs == {"n_clips": 2, "tau": 0.5, "num_classes": 3}
    cached, = (tmp_path / "runs").glob("train_throughput-*.json")
    assert json.loads(cached.read_text()) == first
