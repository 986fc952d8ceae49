"""Training from Python: `train(FitConfig(train=..., out=...))`. glat-fit and the demo build a
FitConfig and call this; nothing goes through argv."""

from __future__ import annotations

import dataclasses
import os

STRATEGY_CHOICES = ("default", "mirrored", "multiworker")
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """One training run. `backbone_kwargs` overrides the preset's frontend (n_mels,
    hop_length, spec_augment, ...) and architecture settings; `batch_size` is the global
    batch over all replicas; `checkpoint_every` defaults to `eval_every`. The GL-AT
    variants (GlatModel): `share_weights` (with `reuse_features`: local scores off the global
    features), `distill_weight`/`distill_target`, and a cheaper
    local stream `local_backbone` (a preset) with `local_backbone_kwargs`."""

    train: str
    out: str
    eval: str | None = None
    backbone: str = "cnn10"
    n_clips: int = 5
    tau: float = 3.0
    loss_mode: str = "joint"
    selection: str = "attention"
    suppress_overlap: bool = True
    backbone_kwargs: dict = dataclasses.field(default_factory=dict)
    share_weights: bool = False
    reuse_features: bool = False
    distill_weight: float = 0.0
    distill_target: str = "fused"
    local_backbone: str | None = None
    local_backbone_kwargs: dict = dataclasses.field(default_factory=dict)
    backbone_only: bool = False
    random_crop: float | None = None
    batch_size: int = 32
    steps: int = 1000
    eval_every: int = 500
    checkpoint_every: int | None = None
    lr: float = 1e-3
    amsgrad: bool = False
    mixup: float = 0.0
    balanced: bool = True
    skip_corrupt: bool = False
    strategy: str = "default"
    mixed_precision: str = "float32"
    jit: bool = False
    init: str | None = None
    resume: bool = False
    seed: int | None = None
    eval_batch_size: int = 16
    progress: bool = True

    def __post_init__(self):
        if not self.train or not self.out:
            raise ValueError("train (a shard glob) and out (a folder) are required")
        if self.random_crop is not None and not self.backbone_only:
            raise ValueError("random_crop is a baseline control: use it with backbone_only")
        for name in ("steps", "batch_size", "eval_every", "n_clips", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.strategy not in STRATEGY_CHOICES:
            raise ValueError(f"strategy must be one of {STRATEGY_CHOICES}, got {self.strategy!r}")
        if self.mixed_precision not in POLICIES:
            raise ValueError(f"mixed_precision must be one of {POLICIES}, got "
                             f"{self.mixed_precision!r}")
        if self.checkpoint_every is None:
            object.__setattr__(self, "checkpoint_every", self.eval_every)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, **changes) -> "FitConfig":
        return dataclasses.replace(self, **changes)


def build_model(config: FitConfig, num_classes: int, sample_rate: int, labels, samples: int):
    """The built GlatModel (or baseline) of `config`, named by the shards' `labels`."""
    from glat_tf import backbones
    from glat_tf.baseline import BackboneTagger
    from glat_tf.model import GlatModel

    names = {} if labels is None else {"class_names": labels.names, "class_mids": labels.mids}
    if config.backbone_only:
        model = BackboneTagger(config.backbone, num_classes, sample_rate,
                               backbone_kwargs=config.backbone_kwargs, **names)
    else:
        local = None
        if config.local_backbone:
            local = backbones.build(config.local_backbone, num_classes,
                                    frontend={"sample_rate": sample_rate}, name="local_stream",
                                    **config.local_backbone_kwargs)
        model = GlatModel(config.backbone, num_classes, config.n_clips, config.tau, sample_rate,
                          loss_mode=config.loss_mode, suppress_overlap=config.suppress_overlap,
                          selection=config.selection, backbone_kwargs=config.backbone_kwargs,
                          local_backbone=local, share_weights=config.share_weights,
                          reuse_features=config.reuse_features,
                          distill_weight=config.distill_weight,
                          distill_target=config.distill_target, **names)
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

    def train_data(context, seed):
        return pipeline.train_dataset(config.train, config.batch_size, num_classes,
                                      balanced=config.balanced, mixup_alpha=config.mixup,
                                      crop_samples=crop, seed=seed, input_context=context,
                                      skip_corrupt=config.skip_corrupt)

    def eval_data():
        return pipeline.eval_dataset(config.eval, config.eval_batch_size, num_classes)

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
