"""Training from Python: `train(FitConfig(train=..., out=...))`. glat-fit and the demo build a
FitConfig and call this; nothing goes through argv."""

from __future__ import annotations

import dataclasses
import os

from glat_tf.layers.select_clips import SELECTIONS
from glat_tf.model import DISTILL_TARGETS, LOSS_MODES

STRATEGY_CHOICES = ("default", "mirrored", "multiworker")
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def setting(default=None, help="", *, choices=None, flag=None, metavar=None, model=False,
            factory=None):
    """A FitConfig field with what its command-line flag needs: glat-fit's flags, their
    choices and help are made from these (train/fit.py), so each setting is declared once.
    `flag` names a flag other than --field-name (e.g. --no-balanced for a True default);
    `model` marks a GlatModel keyword argument of the same name."""
    meta = {"help": help, "choices": choices, "flag": flag, "metavar": metavar, "model": model}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """One training run; glat-fit's flags are made from these fields. `batch_size` is the
    global batch over all replicas; `checkpoint_every` defaults to `eval_every`."""

    train: str = setting(help="training shard glob")
    out: str = setting(help="output folder (checkpoints, .keras, TensorBoard)")
    eval: str | None = setting(help="evaluation shard glob (omit: no evaluation)")
    backbone: str = setting("cnn10", "registered backbone preset")
    n_clips: int = setting(5, "N: windows the local stream tags", model=True)
    tau: float = setting(3.0, "window length in seconds", model=True)
    loss_mode: str = setting("joint", "joint: L_g + L_l (the paper); frozen_global: L_l only, "
                             "the global stream frozen", choices=LOSS_MODES, model=True)
    selection: str = setting("attention", "random: the control with random windows",
                             choices=SELECTIONS, model=True)
    suppress_overlap: bool = setting(True, "keep the windows of later picks off earlier ones",
                                     flag="--no-suppress-overlap", model=True)
    backbone_kwargs: dict = setting(
        help='preset overrides as JSON, e.g. \'{"n_mels": 32, "hop_length": 640}\'',
        factory=dict, model=True)
    share_weights: bool = setting(False, "one network for both streams (L_l also trains the "
                                         "global features)", model=True)
    reuse_features: bool = setting(False, "with --share-weights: a window's local score from "
                                          "the global features over it (no second backbone "
                                          "pass)", model=True)
    distill_weight: float = setting(0.0, "weight of the global stream's loss on the fused/local "
                                         "score as a soft target (0: off)", model=True)
    distill_target: str = setting("fused", "the soft target of distillation",
                                  choices=DISTILL_TARGETS, model=True)
    local_backbone: str | None = setting(help="a cheaper preset for the local stream (default: "
                                              "the global stream's architecture)")
    local_backbone_kwargs: dict = setting(help="overrides of --local-backbone's preset, as "
                                               "--backbone-kwargs", factory=dict)
    backbone_only: bool = setting(False, "train the plain backbone (the baseline)")
    random_crop: float | None = setting(help="with --backbone-only: train on random TAU-second "
                                             "crops", metavar="TAU")
    batch_size: int = setting(32, "global batch (all replicas)")
    steps: int = setting(1000, "training steps")
    eval_every: int = setting(500, "steps between evaluations")
    checkpoint_every: int | None = setting(help="steps between checkpoints (default: "
                                                "--eval-every)")
    lr: float = setting(1e-3, "learning rate (Adam)")
    amsgrad: bool = setting(False, "Adam's AMSGrad variant")
    mixup: float = setting(0.0, "mixup alpha (0: off)")
    balanced: bool = setting(True, "class-balanced sampling (PANNs' balanced sampler)",
                             flag="--no-balanced")
    skip_corrupt: bool = setting(False, "skip damaged records (counted in the log and "
                                        "TensorBoard)")
    strategy: str = setting("default", "tf.distribute strategy", choices=STRATEGY_CHOICES)
    mixed_precision: str = setting("float32", "Keras dtype policy", choices=POLICIES)
    jit: bool = setting(False, "XLA-compile the step (slower on CPU)")
    init: str | None = setting(help="initial weights: a .keras model or a PANNs .pth")
    resume: bool = setting(False, "continue from --out's checkpoint")
    seed: int | None = setting(help="weights, dropout and data order")
    eval_batch_size: int = setting(16, "evaluation batch")
    progress: bool = setting(True, "a progress bar with ETA", flag="--no-progress")

    def __post_init__(self):
        if not self.train or not self.out:
            raise ValueError("train (a shard glob) and out (a folder) are required")
        if self.random_crop is not None and not self.backbone_only:
            raise ValueError("random_crop is a baseline control: use it with backbone_only")
        for name in ("steps", "batch_size", "eval_every", "n_clips", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for field in dataclasses.fields(self):
            choices = field.metadata.get("choices")
            if choices and getattr(self, field.name) not in choices:
                raise ValueError(f"{field.name} must be one of {choices}, got "
                                 f"{getattr(self, field.name)!r}")
        if self.checkpoint_every is None:
            object.__setattr__(self, "checkpoint_every", self.eval_every)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def model_kwargs(self) -> dict:
        """The settings GlatModel takes under the same names."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata.get("model")}

    def replace(self, **changes) -> "FitConfig":
        return dataclasses.replace(self, **changes)


def build_model(config: FitConfig, num_classes: int, sample_rate: int, labels, samples: int):
    """The built GlatModel (or baseline) of `config`, named by the shards' `labels`."""
    from glat_tf import backbones
    from glat_tf.baseline import Baseline
    from glat_tf.model import GlatModel

    names = {} if labels is None else {"class_names": labels.names, "class_mids": labels.mids}
    if config.backbone_only:
        model = Baseline(config.backbone, num_classes, sample_rate,
                               backbone_kwargs=config.backbone_kwargs, **names)
    else:
        local = None
        if config.local_backbone:
            local = backbones.build(config.local_backbone, num_classes,
                                    frontend={"sample_rate": sample_rate}, name="local_stream",
                                    **config.local_backbone_kwargs)
        model = GlatModel(config.backbone, num_classes, sample_rate=sample_rate,
                          local_backbone=local, **config.model_kwargs(), **names)
    model.build((None, samples))
    return model


def train(config: FitConfig) -> dict:
    """Builds everything of `config` and trains; returns the Trainer's result
    ({"step", "interrupted", "best", "last", "is_chief"})."""
    from train.strategy import make_strategy

    # MultiWorkerMirroredStrategy must exist before TensorFlow runs any op.
    strategy = make_strategy(config.strategy)

    import keras
    from glat_tf import class_names
    from glat_tf.data import pipeline
    from train.determinism import seed_everything
    from train.init_weights import load_init
    from train.loop import LoopSettings, Trainer

    manifest = pipeline.read_manifest(config.train)
    num_classes, sample_rate = manifest["num_classes"], manifest["sample_rate"]
    labels = class_names.from_manifest(manifest, config.train)
    if labels is None and num_classes == class_names.AUDIOSET_CLASSES:
        labels, _ = class_names.resolve(num_classes)
    crop = None if config.random_crop is None else int(round(config.random_crop * sample_rate))
    if config.seed is not None:
        seed_everything(config.seed)  # seeds and deterministic ops: a seeded run repeats
    keras.mixed_precision.set_global_policy(config.mixed_precision)

    def make_model():
        model = build_model(config, num_classes, sample_rate, labels,
                            crop or manifest["clip_samples"])
        if config.init:
            print(load_init(model, config.init), flush=True)
        return model

    def train_data(context, seed, start_batch):
        return pipeline.train_dataset(config.train, config.batch_size, num_classes,
                                      balanced=config.balanced, mixup_alpha=config.mixup,
                                      crop_samples=crop, seed=seed, input_context=context,
                                      skip_corrupt=config.skip_corrupt, start_batch=start_batch)

    def eval_data():
        return pipeline.eval_dataset(config.eval, config.eval_batch_size, num_classes,
                                     skip_corrupt=config.skip_corrupt)

    if not config.skip_corrupt:  # shards unlike their manifest stop the run before any step
        for glob in (config.train, config.eval):
            if glob:
                pipeline.check_shards(glob, num_classes)

    settings = LoopSettings(steps=config.steps, batch_size=config.batch_size,
                            eval_every=config.eval_every,
                            checkpoint_every=config.checkpoint_every, learning_rate=config.lr,
                            amsgrad=config.amsgrad, jit_compile=config.jit, seed=config.seed,
                            progress=config.progress)
    trainer = Trainer(strategy, make_model, train_data, eval_data if config.eval else None,
                      settings, config.out, resume=config.resume)
    if trainer.start_step:
        print(f"resumed {config.out} at step {trainer.start_step}", flush=True)
    return trainer.run()


def final_eval(out_dir: str, step: int) -> dict:
    """The evaluation logged at `step` in <out>/eval_log.jsonl: {stream: summary}."""
    import json
    path = os.path.join(out_dir, "eval_log.jsonl")
    with open(path, encoding="utf-8") as f:
        entries = [json.loads(line) for line in f if line.strip()]
    for entry in reversed(entries):
        if entry["step"] == step:
            return {k: v for k, v in entry.items() if k != "step"}
    raise ValueError(f"{path} has no evaluation at step {step}")
