"""glat-export's command line: saved-model, tflite and report, label resolution, clear refusals."""

import json
import subprocess
import sys

import keras
import pytest

from export import cli, report
from glat_tf.class_names import resolve
from glat_tf.data.labels import LabelMap, audioset_labels_csv
from tests.export.test_export import WINDOW, tiny_labels, tiny_model, write_shards


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny GlatModel saved as .keras with its labels.csv beside it."""
    folder = tmp_path_factory.mktemp("model")
    tiny_model().save(folder / "model.keras")
    tiny_labels().to_csv(folder / "labels.csv")
    return folder / "model.keras"


def test_labels_resolution_order_and_refusals(tmp_path):
    beside = tmp_path / "run" / "labels.csv"
    beside.parent.mkdir()
    tiny_labels().to_csv(beside)
    other = tmp_path / "other.csv"
    LabelMap(tuple(f"/m/o{i}" for i in range(4)), tuple("abcd")).to_csv(other)
    model_path = beside.parent / "best.keras"
    assert resolve(4, labels_csv=other, model_path=model_path) == (LabelMap.from_csv(other),
                                                                   str(other))
    assert resolve(4, model_path=model_path) == (tiny_labels(), str(beside))
    labels, source = resolve(527, model_path=tmp_path / "elsewhere" / "m.keras")
    assert source == audioset_labels_csv() and labels.names[0] == "Speech"
    with pytest.raises(ValueError, match="no label CSV"):
        resolve(10, model_path=tmp_path / "elsewhere" / "m.keras")
    with pytest.raises(ValueError, match="names 4 classes but the model outputs 5"):
        resolve(5, model_path=model_path)
    # The names inside a model come before an old sidecar beside it; a CSV given wins.
    named = tiny_model(class_names=list("wxyz"), class_mids=[f"/m/{c}" for c in "wxyz"])
    assert resolve(4, model=named, model_path=model_path)[0].names == tuple("wxyz")
    assert resolve(4, labels_csv=other, model=named)[0] == LabelMap.from_csv(other)


def test_saved_model_command(saved, tmp_path, capsys):
    out = tmp_path / "serving"
    assert cli.main(["saved-model", "--model", str(saved), "--out", str(out),
                     "--version", "2"]) == 0
    assert (out / "2" / "saved_model.pb").is_file()
    assert LabelMap.from_csv(out / "2" / "assets" / "labels.csv") == tiny_labels()
    # The same version again is refused rather than overwritten under a running server.
    assert cli.main(["saved-model", "--model", str(saved), "--out", str(out),
                     "--version", "2"]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_tflite_command_and_report(saved, tmp_path, capsys):
    out = tmp_path / "lite"
    assert cli.main(["tflite", "--model", str(saved), "--out", str(out), "--variants", "f32",
                     "--window-seconds", str(WINDOW / 32000), "--streaming"]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["window_samples"] == WINDOW and list(meta["variants"]) == ["f32"]
    files = meta["variants"]["f32"]
    assert sorted(files) == ["global", "global_chunk", "global_edge", "global_head", "local",
                             "local_chunk", "local_crop", "local_head"]
    # A 0.5 s crop is 3 grid features, fewer than both margins (2 + 2): no local_edge model,
    # the runtime scores crops with local_crop (tests/edge_runtime/test_edge_streaming covers the edges).
    assert meta["streaming"]["crop_features"] == 3 and meta["streaming"]["edge_samples"] == 0
    assert all((out / name).stat().st_size > 0 for name in files.values())
    assert meta["streaming"]["stride_samples"] == 16 * 320  # cnn10_tiny pools time 4 times
    assert [row["display_name"] for row in meta["labels"]] == list(tiny_labels().names)

    shards = write_shards(tmp_path / "eval", 12, seed=5)
    code = cli.main(["report", "--model", str(saved), "--exported", str(out), "--eval", shards,
                     "--out", str(tmp_path / "report"), "--latency-runs", "2", "--strict"])
    got = json.loads((tmp_path / "report" / "report.json").read_text())
    # --strict: non-zero exactly when a target is missed (streaming vs exact mAP here).
    assert "f32_streaming_fused_mAP_drop" in got["targets"]
    assert code == (0 if all(t["met"] for t in got["targets"].values()) else 1)
    row = got["variants"]["f32"]
    assert got["clips"] == 12 and row["accepted"] and row["parity"]["max_abs"] < 1e-4
    # Through the float32 pair the fused mAP is Keras' own.
    assert abs(row["fused"]["mAP"] - got["keras"]["fused"]["mAP"]) < 1e-6
    assert row["bytes"]["global"] == (out / "global_f32.tflite").stat().st_size
    assert "RFFT2D" in row["ops"]["global"] and row["latency_ms"]["2_threads"]["pair"] > 0
    assert (tmp_path / "report" / "report.png").stat().st_size > 1000
    assert "| f32 |" in (tmp_path / "report" / "report.md").read_text()
    # Each clip streamed on its own, with the runtime's crop budget (2) and with N (2 here).
    (setting, stream), = row["streaming"].items()
    assert setting == "crop_budget_2" and 0 < stream["fused"]["mAP"] <= 1
    assert 0 <= stream["mean_abs_vs_exact"] <= stream["max_abs_vs_exact"] <= 1
    # Budget N scores every pick: the answer is Keras' on the streamed window itself.
    assert stream["max_abs_vs_keras_window"] < 1e-4
    assert "| f32 streaming, crop budget 2 |" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.slow
def test_int8_export_meets_the_report_targets_strictly(saved, tmp_path):
    """CI's int8 check: the test model exported f32 + int8 and `report --strict` exits 0 (int8
    fused mAP within 0.01 of Keras, int8 at most 1/3 of what float32 can shrink)."""
    out = tmp_path / "lite"
    calibration = write_shards(tmp_path / "cal", 100, seed=1)
    assert cli.main(["tflite", "--model", str(saved), "--out", str(out), "--variants",
                     "f32,int8", "--calibration", calibration, "--calibration-clips", "100",
                     "--window-seconds", str(WINDOW / 32000)]) == 0
    shards = write_shards(tmp_path / "eval", 40, seed=5)
    code = cli.main(["report", "--model", str(saved), "--exported", str(out), "--eval", shards,
                     "--out", str(tmp_path / "report"), "--latency-runs", "1", "--strict"])
    got = json.loads((tmp_path / "report" / "report.json").read_text())
    assert sorted(got["targets"]) == ["int8_fused_mAP_drop", "int8_size_ratio"]
    assert code == 0, got["targets"]
    row = got["variants"]["int8"]
    # The frontend's constants (mel matrix) are float32 in both files and left out of the ratio.
    for stream, kept in row["kept_float_bytes"].items():
        assert 513 * 64 * 4 <= kept <= 1.01 * got["variants"]["f32"]["kept_float_bytes"][stream]
    assert got["targets"]["int8_size_ratio"]["value"] <= 1 / 3  # 0.52 in whole files


def test_report_strict_exits_non_zero_on_a_missed_target(monkeypatch, tmp_path, capsys):
    """`report --strict` turns a missed target into exit code 1; without it the exit is 0."""
    missed = {"model": {"backbone": "cnn10", "window_samples": 8, "n_clips": 1, "tau": 1.0},
              "clips": 1, "keras": {"fused": {"mAP": 0.8, "mAUC": 0.9}}, "variants": {},
              "targets": {"int8_fused_mAP_drop": {"value": 0.02, "target": 0.01, "met": False}}}
    monkeypatch.setattr(report, "build_report", lambda *args, **kwargs: missed)
    monkeypatch.setattr(report, "read_eval", lambda *args: (None, None))
    monkeypatch.setattr(report, "plot", lambda *args: None)
    monkeypatch.setattr("export.consistency.report_matrix", lambda *args: {})
    monkeypatch.setattr("glat_tf.loading.load_model", lambda path: type("M", (), {"num_classes": 4}))
    monkeypatch.setattr("edge_runtime.ExportMetadata.read",
                        lambda folder: type("Meta", (), {"window_samples": 8}))
    (tmp_path / "lite").mkdir()
    (tmp_path / "lite" / "metadata.json").write_text("{}")  # report checks it is there first
    argv = ["--model", "m.keras", "--exported", str(tmp_path / "lite"), "--eval", "x", "--out",
            str(tmp_path)]
    assert report.main(argv) == 0
    assert report.main(argv + ["--strict"]) == 1
    assert "targets not met: int8_fused_mAP_drop" in capsys.readouterr().err
    missed["targets"]["int8_fused_mAP_drop"]["met"] = True
    assert report.main(argv + ["--strict"]) == 0


def test_report_targets_and_table():
    rows = {v: {"bytes": {"global": size, "local": size}, "fused": {"mAP": m, "mAUC": 0.9},
                "parity": {"max_abs": 0.1, "mean_abs": 0.01, "selection": 1.0},
                "latency_ms": {"1_threads": {"pair": 5.0}, "2_threads": {"pair": 3.0}}}
            for v, size, m in (("f32", 3000, 0.80), ("int8", 1100, 0.785))}
    built = {"model": {"backbone": "cnn10", "window_samples": 320000, "n_clips": 5, "tau": 3.0},
             "clips": 10, "keras": {"fused": {"mAP": 0.80, "mAUC": 0.9}}, "variants": rows}
    targets = report._targets(built)
    assert targets["int8_fused_mAP_drop"]["met"] is False  # 0.015 > 0.01
    assert targets["int8_size_ratio"]["met"] is False  # 1100 / 3000 > 1/3
    rows["int8"]["fused"]["mAP"], rows["int8"]["bytes"] = 0.795, {"global": 900, "local": 900}
    targets = report._targets(built)
    assert targets["int8_fused_mAP_drop"]["met"] and targets["int8_size_ratio"]["met"]
    table = report.markdown({**built, "targets": targets})
    assert "| int8 | 1 | 1 | 0.7950 |" in table and "int8_size_ratio: 0.3000" in table


@pytest.mark.parametrize("argv, message", [
    (["--variants", "f64"], "--variants must name some of"),
    (["--variants", "f32,int8"], "needs --calibration"),
])
def test_tflite_command_refuses_bad_options(saved, tmp_path, capsys, argv, message):
    assert cli.main(["tflite", "--model", str(saved), "--out", str(tmp_path)] + argv) == 2
    assert message in capsys.readouterr().err


def test_int8_refuses_too_few_calibration_clips(saved, tmp_path, capsys):
    shards = write_shards(tmp_path / "cal", 20)
    assert cli.main(["tflite", "--model", str(saved), "--out", str(tmp_path / "out"),
                     "--variants", "int8", "--calibration", shards]) == 2
    assert "at least 100" in capsys.readouterr().err
    assert not (tmp_path / "out" / "metadata.json").exists()


def test_refuses_what_is_not_a_glat_model(tmp_path, capsys):
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    plain.save(tmp_path / "plain.keras")
    for command in (["saved-model"], ["tflite", "--variants", "f32"]):
        assert cli.main([*command, "--model", str(tmp_path / "plain.keras"),
                         "--out", str(tmp_path / "o")]) == 2
        assert "not a GlatModel" in capsys.readouterr().err
    assert cli.main(["saved-model", "--model", str(tmp_path / "missing.keras"),
                     "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_console_script_help():
    done = subprocess.run([sys.executable, "-m", "export.cli", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0
    assert all(word in done.stdout for word in ("saved-model", "tflite", "report"))
