"""Training: every strategy for a few steps, interruption and resume, frozen_global, beating chance."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.data_fixtures import write_tiny_shards
from glat_tf.model import GlatModel
from tests.harness import check
from glat_tf.baseline import Baseline
from train.checkpoints import StopRequest
from train.fit import main, parse_args
from train.init_weights import load_init
from train.loop import LoopSettings, Trainer

SR = 32000
TONES = (400.0, 1000.0, 2500.0, 6000.0)  # one class per tone frequency
CHEAP = {"n_mels": 32, "hop_length": 640, "spec_augment": False}  # 4x fewer conv MACs
TINY = ["--backbone", "cnn6_tiny", "--backbone-kwargs", json.dumps(CHEAP), "--n-clips", "2",
        "--tau", "0.5", "--batch-size", "4", "--seed", "0", "--no-progress"]


def tone_clips(n: int, seconds: float, seed: int, prefix: str):
    """Clips of low noise with 1-2 half-second tone bursts; the tones are the labels."""
    rng = np.random.default_rng(seed)
    length = int(seconds * SR)
    t = np.arange(length) / SR
    clips = []
    for i in range(n):
        classes = rng.choice(len(TONES), size=rng.integers(1, 3), replace=False)
        x = 0.01 * rng.standard_normal(length)
        for c in classes:
            start = rng.integers(0, length - SR // 2)
            x[start:start + SR // 2] += 0.3 * np.sin(2 * np.pi * TONES[c] * t[start:start + SR // 2])
        clips.append((f"{prefix}{i:04d}", (x * 20000).astype(np.int16), sorted(map(int, classes))))
    return clips


def make_tone_shards(root, n_train=32, n_eval=24, seconds=2.0) -> dict:
    """Train and eval shards (with manifests) and the label CSV beside the train shards."""
    globs = {split: write_tiny_shards(root / split, tone_clips(n, seconds, seed, split), 8,
                                      len(TONES), manifest=True, split=split)
             for split, n, seed in (("train", n_train, 1), ("eval", n_eval, 2))}
    labels = root / "train" / "labels.csv"
    labels.write_text("index,mid,display_name\n" + "".join(
        f"{i},/m/tone{i},Tone {int(f)} Hz\n" for i, f in enumerate(TONES)))
    manifest = json.loads((root / "train" / "manifest.json").read_text())
    (root / "train" / "manifest.json").write_text(json.dumps({**manifest, "labels_csv": labels.name}))
    return {**globs, "labels_csv": str(labels)}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_tone_shards(tmp_path_factory.mktemp("tones"))


def checkpoint_steps(out) -> list[int]:
    return sorted(int(p.split("-")[1].split(".")[0]) for p in os.listdir(out / "checkpoints")
                  if p.endswith(".index"))


def run_fit(args, env=None, timeout=240, prelude=""):
    """`python -c` running glat-fit in a fresh process (strategies configure TF before it starts)."""
    code = prelude + "import sys\nfrom train.fit import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                                                **(env or {})})


TWO_CPUS = ("import tensorflow as tf\n"
            "cpu = tf.config.list_physical_devices('CPU')[0]\n"
            "tf.config.set_logical_device_configuration("
            "cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n")


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus(shards, tmp_path):
    out = tmp_path / "mirrored"
    proc = run_fit(["--train", shards["train"], *TINY, "--strategy", "mirrored", "--steps", "2",
                    "--out", str(out)], prelude=TWO_CPUS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 replica(s)" in proc.stdout
    assert checkpoint_steps(out) == [2]
    assert (out / "final.keras").exists() and (out / "labels.csv").exists()


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multiworker_strategy_with_two_local_workers(shards, tmp_path):
    from train.strategy import tf_config

    out = tmp_path / "multiworker"
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    code = "import sys\nfrom train.fit import main\nsys.exit(main(sys.argv[1:]))\n"
    args = ["--train", shards["train"], *TINY, "--backbone-only", "--strategy", "multiworker",
            "--steps", "2", "--out", str(out)]
    procs = [subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                                   "TF_CONFIG": tf_config(workers, i)}) for i in range(2)]
    try:
        outputs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:  # a worker whose peer died waits forever in its first all-reduce
            if p.poll() is None:
                p.kill()
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-3000:]
    assert "on 2 replica(s)" in outputs[0][0]
    assert "on 2 replica(s)" not in outputs[1][0]  # only the chief logs
    assert checkpoint_steps(out) == [2]
    assert (out / "final.keras").exists()


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_continues_the_step_count(shards, tmp_path):
    out = tmp_path / "interrupted"
    args = ["--train", shards["train"], *TINY, "--backbone-only", "--steps", "1000",
            "--checkpoint-every", "5", "--out", str(out)]
    code = "import sys\nfrom train.fit import main\nsys.exit(main(sys.argv[1:]))\n"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        assert "training steps 0..1000" in proc.stdout.readline()
        deadline = time.time() + 180
        while time.time() < deadline and not (out / "checkpoints" / "checkpoint").exists():
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr
    assert "continue with --resume" in stdout
    stopped = checkpoint_steps(out)[-1]  # the checkpoint written on the signal
    assert 5 <= stopped < 1000
    assert not (out / "final.keras").exists()

    assert main(["--train", shards["train"], *TINY, "--backbone-only", "--steps",
                 str(stopped + 2), "--checkpoint-every", "5", "--out", str(out), "--resume"]) == 0
    assert checkpoint_steps(out)[-1] == stopped + 2
    assert (out / "final.keras").exists()


def test_a_finished_output_folder_is_not_overwritten_without_resume(shards, tmp_path):
    argv = ["--train", shards["train"], *TINY, "--backbone-only", "--steps", "1", "--out",
            str(tmp_path / "run")]
    assert main(argv) == 0
    assert checkpoint_steps(tmp_path / "run") == [1]
    assert main(argv) == 2  # clear error: pass --resume or another --out
    assert main([*argv, "--resume"]) == 0  # nothing left to do: stays at step 1
    assert checkpoint_steps(tmp_path / "run") == [1]


def _trainer(shards, out, model_fn, steps, **settings):
    from glat_tf.data import pipeline

    strategy = tf.distribute.get_strategy()
    return Trainer(strategy, model_fn,
                   lambda ctx, seed, start: pipeline.train_dataset(
                       shards["train"], 4, len(TONES), seed=seed, input_context=ctx,
                       start_batch=start),
                   None, LoopSettings(steps=steps, batch_size=4, seed=0, progress=False,
                                      **settings), str(out))


def test_frozen_global_keeps_global_weights_bit_identical(shards, tmp_path):
    def build():
        model = GlatModel("cnn6_tiny", len(TONES), 2, 0.5, loss_mode="frozen_global",
                          backbone_kwargs=CHEAP)
        model.build((None, 2 * SR))
        return model

    trainer = _trainer(shards, tmp_path / "frozen", build, steps=3)
    global_before = [w.copy() for w in trainer.model.global_backbone.get_weights()]
    local_before = [w.copy() for w in trainer.model.local_backbone.get_weights()]
    assert trainer.run()["step"] == 3
    for before, after in zip(global_before, trainer.model.global_backbone.get_weights()):
        np.testing.assert_array_equal(before, after)
    changed = [not np.array_equal(b, a) for b, a in
               zip(local_before, trainer.model.local_backbone.get_weights())]
    assert sum(changed) > len(changed) // 2  # the local stream did train


def test_mixed_float16_trains_with_a_loss_scale(shards, tmp_path):
    def build():
        model = Baseline("cnn6_tiny", len(TONES), backbone_kwargs=CHEAP)
        model.build((None, 2 * SR))
        return model

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        trainer = _trainer(shards, tmp_path / "fp16", build, steps=2, log_every=1)
        assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
        assert trainer.run()["step"] == 2  # a non-finite loss would have raised
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert trainer.model.global_backbone.layers[-1].compute_dtype == "float16"


@pytest.mark.slow
def test_briefly_trained_tiny_model_beats_chance_map(shards, tmp_path):
    from glat_tf.data import pipeline
    from train.evaluate import predict, score_streams

    assert main(["--train", shards["train"], "--eval", shards["eval"], *TINY, "--backbone-only",
                 "--steps", "40",
                 "--eval-every", "40", "--lr", "3e-3", "--out", str(tmp_path / "brief")]) == 0
    model = keras.models.load_model(tmp_path / "brief" / "final.keras")
    labels, scores = predict(model, pipeline.eval_dataset(shards["eval"], 8, len(TONES)),
                             progress=False)
    chance = labels.mean(axis=0).mean()  # a random ranking's expected AP is the class prior
    trained = score_streams(labels, scores)["global"].mAP
    assert trained > chance + 0.2, (trained, chance)


def test_backbone_tagger_round_trips_and_initialises_both_glat_streams(tmp_path):
    tagger = Baseline("cnn6_tiny", num_classes=3)
    outputs = check.run_backbone_test(tagger, (tf.random.normal([2, SR]) * 0.1,),
                                      {"global": (2, 3)}, "baseline", directory=tmp_path)
    assert np.all((outputs["global"] > 0) & (outputs["global"] < 1))
    glat = GlatModel("cnn6_tiny", num_classes=3, n_clips=2, tau=0.5)
    glat.build((None, SR))
    message = load_init(glat, str(tmp_path / "model.keras"))
    assert "global, local" in message
    for stream in (glat.global_backbone, glat.local_backbone):
        for a, b in zip(tagger.global_backbone.get_weights(), stream.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_init_refuses_another_architecture(tmp_path):
    cnn10 = Baseline("cnn10_tiny", num_classes=3)
    cnn10.build((None, SR))
    cnn10.save(tmp_path / "cnn10.keras")
    glat = GlatModel("cnn6_tiny", num_classes=3, n_clips=2, tau=0.5)
    glat.build((None, SR))
    with pytest.raises(ValueError, match="not the same backbone preset"):
        load_init(glat, str(tmp_path / "cnn10.keras"))


def test_config_file_gives_defaults_and_flags_override_it(tmp_path):
    config = tmp_path / "exp.py"
    config.write_text('"""header"""\nCONFIG = {"train": "a/*.tfrecord", "out": "runs/x", '
                      '"n_clips": 3, "tau": 2.0, "steps": 50}\n')
    args = parse_args(["--config", str(config), "--steps", "7"])
    assert (args.n_clips, args.tau, args.steps, args.train) == (3, 2.0, 7, "a/*.tfrecord")
    config.write_text('CONFIG = {"train": "a", "out": "b", "n_clip": 3}\n')
    with pytest.raises(SystemExit):
        parse_args(["--config", str(config)])  # a misspelt key is an error, not ignored


def test_stop_request_turns_sigterm_into_a_flag():
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_init_from_a_panns_checkpoint_fills_both_streams_for_a_new_label_set(tmp_path):
    torch = pytest.importorskip("torch")
    from tests.glat_tf.test_panns_import import panns_cnn10_state

    state = panns_cnn10_state(np.random.default_rng(0))
    torch.save({"model": {k: torch.from_numpy(v) for k, v in state.items()}},
               tmp_path / "Cnn10.pth")
    glat = GlatModel("cnn10", num_classes=len(TONES), n_clips=1, tau=0.5)
    glat.build((None, SR))
    message = load_init(glat, str(tmp_path / "Cnn10.pth"))
    assert "classifier left new for 4 classes" in message
    first_conv = state["conv_block1.conv1.weight"].transpose(2, 3, 1, 0)  # (kh, kw, in, out)
    for stream in (glat.global_backbone, glat.local_backbone):
        kernel = stream.blocks[0].conv_layers[0].kernel
        np.testing.assert_allclose(np.asarray(kernel), first_conv, rtol=0, atol=0)
        assert tuple(stream.head.fc.kernel.shape) == (512, len(TONES))


def test_experiment_rows_scale_the_matched_baseline_and_report_the_spread():
    from train.report import aggregate, markdown_table
    from train.variants import row_specs

    specs = row_specs({"steps": 200, "tau": 2.0, "backbone": "cnn10_tiny",
                       "backbone_kwargs": {"n_mels": 32}}, ratio=1.58)
    assert specs["glat_shared"] == {"share_weights": True}
    assert specs["glat_distill"]["distill_weight"] > 0
    assert specs["glat_cheap_local"] == {"local_backbone": "cnn10_tiny", "local_backbone_kwargs":
                                         {"n_mels": 32, "width": 0.0625}}
    assert specs["baseline_matched"] == {"backbone_only": True, "steps": 316}
    assert specs["baseline_crop"] == {"backbone_only": True, "random_crop": 2.0}
    assert specs["glat_random"] == {"selection": "random"}
    runs = [{"mAP": 0.2, "mAUC": 0.6, "d_prime": 0.3}, {"mAP": 0.4, "mAUC": 0.8, "d_prime": 1.2}]
    agg = aggregate(runs)
    assert agg["mAP"]["mean"] == pytest.approx(0.3)
    assert agg["mAP"]["std"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert "| GL-AT | 0.300 +- 0.141 |" in markdown_table([("GL-AT", agg)])


def test_training_is_callable_from_python_with_a_config_object(shards, tmp_path):
    """train(FitConfig(...)) needs no argv; the model it saves carries the shards' class names."""
    from train.run import FitConfig, train

    config = FitConfig(train=shards["train"], out=str(tmp_path / "py"), backbone="cnn6_tiny",
                       backbone_kwargs=CHEAP, n_clips=2, tau=0.5, batch_size=4, steps=2,
                       seed=0, progress=False)
    assert config.checkpoint_every == config.eval_every
    result = train(config)
    assert result["step"] == 2 and result["interrupted"] is None
    model = keras.models.load_model(tmp_path / "py" / "final.keras")
    assert model.class_names == tuple(f"Tone {int(f)} Hz" for f in TONES)
    assert model.class_mids == tuple(f"/m/tone{i}" for i in range(len(TONES)))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        config.replace(steps=0)
    with pytest.raises(ValueError, match="random_crop is a baseline control"):
        config.replace(random_crop=1.0)


def test_the_loop_and_model_fit_run_the_same_training_step(shards):
    """A replica step of the loop is the model's training_step: same weights after one step."""
    from train.loop import make_optimizer, make_train_step

    wave = np.random.default_rng(3).normal(0, 0.1, (4, SR)).astype(np.float32)
    labels = np.eye(len(TONES), dtype=np.float32)
    settings = LoopSettings(steps=1, batch_size=4)
    weights = []
    for use_loop in (True, False):
        keras.utils.set_random_seed(0)
        model = GlatModel("cnn6_tiny", len(TONES), 1, 0.5, backbone_kwargs=CHEAP)
        model.build((None, SR))
        optimizer = make_optimizer(settings)
        if use_loop:
            step = make_train_step(tf.distribute.get_strategy(), model, optimizer, settings)
            step(iter(tf.data.Dataset.from_tensors((wave, labels))))
        else:
            model.training_step(optimizer, tf.constant(wave), tf.constant(labels), 4)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-5)  # graph vs eager rounding


@pytest.mark.slow
def test_shared_weights_train_mirrored_and_export_as_one_backbone_used_twice(shards, tmp_path):
    from edge_runtime import Pipeline
    from export.tflite import export_tflite
    from glat_tf.class_names import from_model

    out = tmp_path / "shared"
    proc = run_fit(["--train", shards["train"], *TINY, "--share-weights", "--strategy",
                    "mirrored", "--steps", "2", "--out", str(out)], prelude=TWO_CPUS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 replica(s)" in proc.stdout
    model = keras.models.load_model(out / "final.keras")
    assert model.share_weights and model.local_backbone is model.global_backbone
    window = 2 * SR
    export_tflite(model, tmp_path / "lite", from_model(model), window_samples=window)
    wave = np.random.default_rng(5).normal(0, 0.1, window).astype(np.float32)
    got = Pipeline.from_export(tmp_path / "lite", "f32", mode="exact")(wave)
    expected = model(wave[None], training=False)
    check.assert_outputs_close({"fused": got.fused}, {"fused": expected["fused"][0]},
                               "glat_model")
