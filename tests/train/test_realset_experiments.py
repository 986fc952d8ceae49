"""train/realset_experiments.py --previous (rows added to a recorded table without retraining
it) and the round-3 rows of train/variants.py realset_rows."""

import json

import pytest

from train import realset_experiments
from train.variants import realset_rows


def recorded_run(map_value: float, cpu: float) -> dict:
    groups = {g: {"mAP": {"global": map_value}} for g in ("short", "medium", "long")}
    return {"cpu": {"train_cpu_seconds": cpu}, "eval": {"global": {"mAP": map_value}},
            "groups": groups, "best": {"step": 300},
            "cost": {"ms_per_clip": 8.0, "multiply_adds": 57_000_000}}


@pytest.fixture()
def recorded(tmp_path):
    (tmp_path / "data" / "shards").mkdir(parents=True)
    (tmp_path / "data" / "shards" / "manifest.json").write_text("{}")
    runs = {"baseline": {"0": recorded_run(0.25, 55.0), "1": recorded_run(0.20, 57.0)}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"runs": runs, "steps": {"baseline": {"0": 300, "1": 300}},
                                "command": "the old command"}))
    return tmp_path, path


def test_previous_runs_are_kept_not_retrained(recorded):
    tmp_path, old = recorded
    out = tmp_path / "results"
    # Training would fail here (the shards are empty): the recorded runs must be reused.
    code = realset_experiments.main(["--data", str(tmp_path / "data"), "--rows", "baseline",
                                     "--seeds", "0,1", "--previous", str(old),
                                     "--out", str(tmp_path / "runs"), "--results", str(out)])
    assert code == 0
    result = json.loads((out / "realset_results.json").read_text())
    assert result["command"] == "the old command"
    assert result["seeds"] == [0, 1]
    (row,) = [r for r in result["rows"] if r["run"] == "baseline"]
    assert row["seeds"] == 2
    assert row["mAP"]["mean"] == pytest.approx(0.225)
    assert "0.225 +- 0.035" in (out / "realset_results.md").read_text()


def test_unreadable_previous_is_one_error_line(recorded, capsys):
    tmp_path, _ = recorded
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit) as exit_info:
        realset_experiments.main(["--data", str(tmp_path / "data"), "--previous", str(bad),
                                  "--out", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    assert "error: --previous" in capsys.readouterr().err


def test_round3_rows():
    config = {"backbone": "cnn10_tiny", "n_clips": 3, "tau": 2.0,
              "backbone_kwargs": {"n_mels": 32, "hop_length": 320}}
    rows = realset_rows(config)
    assert rows["baseline_narrow"] == {"backbone_only": True,
                                       "backbone_kwargs": {"n_mels": 28, "hop_length": 320}}
    short, control = rows["glat_reuse_short"], rows["glat_reuse_short_random"]
    assert (short["n_clips"], short["tau"], short["reuse_features"]) == (5, 1.0, True)
    assert control == {**short, "selection": "random"}
    assert "glat_reuse_short" in realset_experiments.MATCHED


def test_matched_steps_compare_runs_of_one_session():
    def run(cpu, session):
        return {**recorded_run(0.2, cpu), "session": session}
    runs = {"baseline": {0: run(50.0, "a"), 1: run(50.0, "a")},
            "glat_x": {0: run(75.0, "a"), 1: run(150.0, "a")}}
    matched = realset_experiments.matched_steps
    assert matched(runs, "glat_x", 1, 300) == 900  # one session: this seed's pair
    # glat_x seed 1 measured in a later session (a loaded machine): seed 0's ratio.
    runs["glat_x"][1]["session"] = "b"
    assert matched(runs, "glat_x", 1, 300) == 450
    runs["glat_x"][0]["session"] = "b"
    assert matched(runs, "glat_x", 0, 300) is None
    # Runs recorded without a session pair with none.
    runs = {n: {s: recorded_run(0.2, 50.0) for s in (0, 1)} for n in ("baseline", "glat_x")}
    assert matched(runs, "glat_x", 0, 300) is None
