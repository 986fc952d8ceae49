"""glat-eval: summary.json per stream, per-class CSV, PNGs, N/tau sweeps, duration groups."""

import csv
import json
import shutil

import numpy as np
import pytest

from glat_tf.data.labels import LabelMap
from glat_tf.metrics import tagging_scores
from glat_tf.model import GlatModel
from tests.train.test_train import CHEAP, SR, TONES, make_tone_shards
from glat_tf.baseline import Baseline
from train.durations import duration_groups, group_of
from train.evaluate import evaluate, main, predict, with_clips


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tone shards and an untrained (but fixed) GL-AT model saved with its labels."""
    root = tmp_path_factory.mktemp("eval")
    shards = make_tone_shards(root, n_train=8, n_eval=16)
    model = GlatModel("cnn6_tiny", num_classes=len(TONES), n_clips=2, tau=0.5,
                      backbone_kwargs=CHEAP)
    model.build((None, 2 * SR))
    path = root / "model" / "glat.keras"
    path.parent.mkdir()
    model.save(path)
    shutil.copyfile(shards["labels_csv"], path.parent / "labels.csv")  # as glat-fit leaves it
    return {**shards, "model": str(path), "root": root}


def test_summary_per_class_csv_and_plots(setup, tmp_path):
    from glat_tf.data import pipeline

    out = tmp_path / "out"
    strong = tmp_path / "strong.csv"
    strong.write_text("segment_id,mid,onset,offset\n"
                      "a,/m/tone0,0.0,0.2\na,/m/tone0,1.0,1.3\nb,/m/tone1,0.0,1.0\n"
                      "c,/m/tone2,0.0,9.0\nc,/m/unknown,0,1\n")
    assert main(["--model", setup["model"], "--eval", setup["eval"], "--out", str(out),
                 "--labels", setup["labels_csv"], "--strong-labels", str(strong),
                 "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"global", "local", "fused"}
    for stream in summary.values():
        assert set(stream) == {"mAP", "mAUC", "d_prime", "skipped_classes"}
    # The reported numbers are those of the model's own outputs on the eval clips.
    from keras.models import load_model
    labels, scores = predict(load_model(setup["model"]),
                             pipeline.eval_dataset(setup["eval"], 5, len(TONES)), progress=False)
    assert len(labels) == 16
    for stream in ("global", "fused"):
        assert summary[stream]["mAP"] == pytest.approx(tagging_scores(labels, scores[stream]).mAP)
    with open(out / "per_class_ap.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["display_name"] for r in rows] == [f"Tone {int(t)} Hz" for t in TONES]
    assert [int(r["positives"]) for r in rows] == labels.sum(axis=0).astype(int).tolist()
    assert (out / "per_class_ap.png").stat().st_size > 5000
    groups = json.loads((out / "duration_groups.json").read_text())
    assert groups["short"]["classes"] == ["Tone 400 Hz"]  # median of 0.2 s and 0.3 s
    assert groups["medium"]["classes"] == ["Tone 1000 Hz"]
    assert groups["long"]["classes"] == ["Tone 2500 Hz"]


def test_sweep_at_the_models_own_n_and_tau_reproduces_its_score(setup, tmp_path):
    out = tmp_path / "sweep"
    summary = evaluate(setup["model"], setup["eval"], str(out), batch_size=8,
                       sweep_n=[1, 2], sweep_tau=[0.5, 1.5], progress=False)
    points = json.loads((out / "sweep.json").read_text())
    assert [p["n_clips"] for p in points["n"]] == [1, 2]
    assert [p["tau"] for p in points["tau"]] == [0.5, 1.5]
    own = points["n"][1]  # N=2, tau=0.5: the saved model's settings
    assert own["fused"] == pytest.approx(summary["fused"]["mAP"])
    # The global stream does not depend on N or tau.
    assert len({round(p["global"], 12) for p in points["n"] + points["tau"]}) == 1
    assert (out / "sweep.png").stat().st_size > 5000


def test_with_clips_keeps_the_trained_weights():
    model = GlatModel("cnn6_tiny", num_classes=3, n_clips=2, tau=0.5)
    model.build((None, SR))
    clone = with_clips(model, 1, 0.25)
    assert (clone.n_clips, clone.tau, clone.crop_samples) == (1, 0.25, 8000)
    for a, b in zip(model.local_backbone.get_weights(), clone.local_backbone.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_backbone_only_model_reports_global_only_and_refuses_a_sweep(setup, tmp_path):
    model = Baseline("cnn6_tiny", num_classes=len(TONES))
    model.build((None, 2 * SR))
    path = setup["root"] / "model" / "baseline.keras"
    model.save(path)
    out = tmp_path / "baseline"
    assert main(["--model", str(path), "--eval", setup["eval"], "--out", str(out),
                 "--no-progress"]) == 0
    assert set(json.loads((out / "summary.json").read_text())) == {"global"}
    assert main(["--model", str(path), "--eval", setup["eval"], "--out", str(out),
                 "--sweep-n", "1,2", "--no-progress"]) == 2


def test_label_map_of_another_size_is_a_clear_error(setup, tmp_path):
    labels = tmp_path / "three.csv"
    labels.write_text("index,mid,display_name\n0,/m/a,A\n1,/m/b,B\n2,/m/c,C\n")
    assert main(["--model", setup["model"], "--eval", setup["eval"], "--out", str(tmp_path),
                 "--labels", str(labels), "--no-progress"]) == 2


def test_duration_groups_from_an_audioset_style_strong_label_file(tmp_path):
    label_map = LabelMap(("/m/a", "/m/b", "/m/c"), ("A", "B", "C"))
    strong = tmp_path / "strong.tsv"
    strong.write_text("segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n"
                      "x\t0.0\t0.1\t/m/a\nx\t0.0\t0.4\t/m/a\ny\t1.0\t4.0\t/m/b\n"
                      "y\t1.0\t2.0\tC\n")
    ap = {"global": np.array([0.2, 0.8, np.nan]), "fused": np.array([0.6, 0.9, 0.5])}
    groups = duration_groups(strong, label_map, ap)
    assert groups["short"] == {"classes": ["A"], "median_seconds": [0.25],
                               "mAP": {"global": 0.2, "fused": 0.6}}
    assert groups["long"]["mAP"] == {"global": 0.8, "fused": 0.9}
    assert groups["medium"]["mAP"] == {"global": None, "fused": 0.5}  # no defined AP: no mean
    assert [group_of(s) for s in (0.49, 0.5, 2.0, 2.01)] == ["short", "medium", "medium", "long"]


def test_strong_labels_with_a_reversed_event_are_rejected(tmp_path):
    strong = tmp_path / "bad.csv"
    strong.write_text("segment_id,mid,onset,offset\na,/m/a,2.0,1.0\n")
    with pytest.raises(ValueError, match="before onset"):
        duration_groups(strong, LabelMap(("/m/a",), ("A",)), {"global": np.array([0.5])})
