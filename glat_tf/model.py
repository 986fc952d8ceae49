"""GlatModel: global stream, class-wise clip selection, local stream, fusion (GLAT_SPEC 2-5).

The pass is written once, as stages that `call` composes and that export converts:
`global_stage` (waveform -> clip scores, frame activations, windows), `local_stage` (crops
-> per-crop scores), `fuse`; and for feature streaming `branch_features` plus the two
heads (`global_head`, `local_head`).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from glat_tf import backbones
from glat_tf.backbones.base import Backbone
from glat_tf.base_model import TaggingModel, binary_crossentropy
from glat_tf.layers.select_clips import SelectClips

LOSS_MODES = ("joint", "frozen_global")
BRANCHES = ("global", "local")
DISTILL_TARGETS = ("fused", "local")
FUSE_SCOPE = "fuse"


def max_mean_pool(scores, axis):
    """PANNs' pooling P: (max + mean) / 2 along `axis`."""
    return (tf.reduce_max(scores, axis=axis) + tf.reduce_mean(scores, axis=axis)) / 2.0


def as_backbone(value, name: str):
    """A Backbone from an instance or its serialized config (a GlatModel's get_config)."""
    if isinstance(value, dict):
        value = keras.saving.deserialize_keras_object(value)
    if not isinstance(value, Backbone):
        raise TypeError(f"{name} must be a preset name, a Backbone or its serialized config, "
                        f"got {type(value).__name__}")
    return value


def global_stream(backbone, num_classes=None, sample_rate=None, backbone_kwargs=None) -> Backbone:
    """The global stream: preset `backbone` built with these settings (named `global_stream`,
    so weights move between GlatModel and the baseline by name), or a given Backbone, whose
    class count and rate must then agree with any that are given."""
    if isinstance(backbone, str):
        frontend = {} if sample_rate is None else {"sample_rate": sample_rate}
        return backbones.build(backbone, num_classes=527 if num_classes is None else num_classes,
                               frontend=frontend, name="global_stream",
                               **dict(backbone_kwargs or {}))
    backbone = as_backbone(backbone, "backbone")
    for what, given, actual in (("num_classes", num_classes, backbone.num_classes),
                                ("sample_rate", sample_rate, backbone.sample_rate)):
        if given is not None and given != actual:
            raise ValueError(f"{what}={given} but the backbone has {actual}")
    return backbone


def clone_backbone(backbone: Backbone, name: str) -> Backbone:
    """The same architecture with fresh weights (the local stream has its own)."""
    return type(backbone).from_config({**backbone.get_config(), "name": name})


@keras.saving.register_keras_serializable(package="glat_tf")
class GlatModel(TaggingModel):
    """GL-AT: tags a clip globally, re-tags the N windows its attention picks, fuses both.

    Input: float32 waveform (batch, samples), any samples >= tau * sample_rate.
    Output dict (scores are probabilities):
      `global` (batch, L), `local` (batch, L), `fused` (batch, L),
      `per_clip` (batch, N, L) the local score of each window,
      `framewise` (batch, frames', L) global frame activations,
      `clip_starts` (batch, N) int32 samples, `selected_classes` (batch, N) int32.
    `backbone` is a preset name (with `num_classes`, `sample_rate` and `backbone_kwargs`
    overrides) or a Backbone instance; the local stream is `local_backbone` or a fresh copy
    of the global architecture. The backbones are saved as objects, so a `.keras` file
    loads without the preset table. loss_mode `joint` trains L_g + L_l (the paper);
    `frozen_global` trains the local stream on L_l only with the global stream frozen in
    inference mode (the authors' code).
    Variants that let the streams help each other: `share_weights` runs one network on both
    views (the clip and its windows), so L_l also trains the global features; with
    `distill_weight` > 0 the global clip score also learns the (stop-gradient) `fused` or
    `local` score as a soft target, so the global model alone improves; a cheaper
    `local_backbone` (another preset or frontend) lowers the local stream's cost, or zooms in
    (a finer frontend than a cheap global stream's). With `reuse_features` (needs
    `share_weights`) a window's local score is the head on the global feature map's frames
    over that window instead of a second pass on the crop: the local stream costs a head. It
    approximates the crop's features (edge frames see context, not zero padding, and windows
    snap to the feature grid); compare `window_features` with the crop's own to measure it.

    Example:
        model = GlatModel.from_preset("cnn10", num_classes=527, n_clips=5, tau=3.0)
        out = model(tf.zeros([2, 320000]))
        out["fused"].shape, out["per_clip"].shape  # (2, 527), (2, 5, 527)
    """

    loss_names = ("loss", "global_loss", "local_loss")
    output_keys = ("fused", "global", "local", "per_clip", "framewise", "clip_starts",
                   "selected_classes")

    def __init__(self, backbone="cnn10", num_classes=None, n_clips=5, tau=3.0, sample_rate=None,
                 loss_mode="joint", suppress_overlap=True, selection="attention",
                 backbone_kwargs=None, local_backbone=None, share_weights=False,
                 distill_weight=0.0, distill_target="fused", reuse_features=False,
                 class_names=(), class_mids=(), **kwargs):
        super().__init__(class_names=class_names, class_mids=class_mids, **kwargs)
        if loss_mode not in LOSS_MODES:
            raise ValueError(f"loss_mode must be one of {LOSS_MODES}, got loss_mode={loss_mode!r}")
        if share_weights and (local_backbone is not None or loss_mode == "frozen_global"):
            raise ValueError("share_weights runs one network on both views: it takes no "
                             "local_backbone and cannot freeze the global stream")
        if distill_target not in DISTILL_TARGETS or not distill_weight >= 0:
            raise ValueError(f"need distill_weight >= 0 and distill_target in {DISTILL_TARGETS}, "
                             f"got {distill_weight!r}, {distill_target!r}")
        if reuse_features and not share_weights:
            raise ValueError("reuse_features reads the local scores off the global features: "
                             "it needs share_weights=True")
        if distill_weight and loss_mode != "joint":
            raise ValueError("distillation trains the global stream: use loss_mode='joint'")
        self.share_weights = bool(share_weights)
        self.reuse_features = bool(reuse_features)
        self.distill_weight = float(distill_weight)
        self.distill_target = distill_target
        self.global_backbone = global_stream(backbone, num_classes, sample_rate, backbone_kwargs)
        if self.share_weights:
            self.local_backbone = self.global_backbone
        elif local_backbone is None:
            self.local_backbone = clone_backbone(self.global_backbone, "local_stream")
        else:
            self.local_backbone = as_backbone(local_backbone, "local_backbone")
        self.num_classes = self.global_backbone.num_classes
        self.sample_rate = self.global_backbone.sample_rate
        if (self.local_backbone.num_classes, self.local_backbone.sample_rate) != (
                self.num_classes, self.sample_rate):
            raise ValueError("the local backbone must have the global one's classes and rate")
        self.n_clips = n_clips
        self.tau = tau
        self.loss_mode = loss_mode
        self.suppress_overlap = suppress_overlap
        self.selection = selection
        self.select = SelectClips(n_clips, tau, self.sample_rate, suppress_overlap, selection,
                                  name="select_clips")
        self.select.check_inputs((None, None), self.num_classes)  # N <= classes, at construction
        self.check_labels()
        if self.distill_weight:
            self.track_losses(self.loss_names + ("distill_loss",))
        if loss_mode == "frozen_global":
            # Frozen also means inference-mode BN: its statistics must not drift either.
            self.global_backbone.trainable = False

    @classmethod
    def from_preset(cls, preset: str, num_classes: int = 527, frontend=None, **kwargs):
        """GlatModel of a registered backbone preset (glat_tf.backbones.names()).

        `frontend` is a FrontendConfig or a dict of overrides; other keyword arguments are
        GlatModel's (n_clips, tau, loss_mode, class_names, ...).
        """
        global_backbone = backbones.build(preset, num_classes=num_classes, frontend=frontend,
                                          name="global_stream")
        return cls(backbone=global_backbone, **kwargs)

    @property
    def crop_samples(self) -> int:
        """Samples of one tau-second crop (TaggingModel's fact)."""
        return self.select.crop_samples

    def branch_backbone(self, branch: str) -> Backbone:
        if branch not in BRANCHES:
            raise ValueError(f"branch must be one of {BRANCHES}, got {branch!r}")
        return self.global_backbone if branch == "global" else self.local_backbone

    def build(self, input_shape):
        self.select.check_inputs(tuple(input_shape), self.num_classes)
        # A concrete forward pass creates every variable (needed before loading weights).
        samples = input_shape[1] if input_shape[1] is not None else self.crop_samples
        self.global_backbone(tf.zeros([1, samples]), training=False)
        self.local_backbone(tf.zeros([1, self.crop_samples]), training=False)
        self.built = True

    # ---- the stages

    def branch_features(self, branch: str, waveform, training=False):
        """(batch, samples) -> one branch's frame-wise features (batch, frames', C)."""
        return self.branch_backbone(branch).features(waveform, training=training)

    def global_head(self, features, training=False) -> dict:
        """Global features (batch, frames', C) -> `global` (batch, L), `framewise` (batch, frames', L)."""
        out = self.global_backbone.head(features, training=training)
        return {"global": tf.sigmoid(out["clipwise_logits"]),
                "framewise": tf.sigmoid(out["framewise_logits"])}

    def local_head(self, features, training=False) -> dict:
        """Local features of M crops (M, frames', C) -> `per_clip` (M, L)."""
        out = self.local_backbone.head(features, training=training)
        return {"per_clip": tf.sigmoid(out["clipwise_logits"])}

    def global_stage(self, waveform, training=False) -> dict:
        """(batch, samples) -> `global`, `framewise`, the windows (`clip_starts` int32
        samples, `selected_classes`) and their `crops` (batch, N, window)."""
        out = self.global_head(self.branch_features("global", waveform, training), training)
        crops, starts, classes = self.select(waveform, out["global"], out["framewise"])
        return {**out, "clip_starts": starts, "selected_classes": classes, "crops": crops}

    def local_stage(self, crops, training=False) -> dict:
        """(M, window) crops -> `per_clip` (M, L)."""
        return self.local_head(self.branch_features("local", crops, training), training)

    @staticmethod
    def fuse(global_scores, per_clip) -> dict:
        """(batch, L) global and (batch, N, L) per-window scores -> `local`, `fused` (batch, L)."""
        with tf.name_scope(FUSE_SCOPE):  # a scope export can keep float in int8
            local = max_mean_pool(per_clip, axis=1)
            fused = max_mean_pool(tf.stack([global_scores, local], axis=1), axis=1)
            return {"local": local, "fused": fused}

    def window_features(self, features, starts, num_samples):
        """The global feature map's frames under each window: (batch, F, C) features,
        (batch, N) int32 start samples -> (batch * N, W, C), W = window / feature stride."""
        frames = tf.shape(features)[1]
        stride = tf.cast(num_samples, tf.float32) / tf.cast(frames, tf.float32)  # samples/frame
        # floor: as many frames as a pass on the crop itself gives (pooling floors too)
        width = tf.maximum(1, tf.cast(tf.floor(self.crop_samples / stride), tf.int32))
        width = tf.minimum(width, frames)
        first = tf.cast(tf.round(tf.cast(starts, tf.float32) / stride), tf.int32)
        first = tf.clip_by_value(first, 0, frames - width)  # (batch, N)
        index = first[:, :, None] + tf.range(width)[None, None, :]  # (batch, N, W)
        picked = tf.gather(features, index, batch_dims=1)  # (batch, N, W, C)
        return tf.reshape(picked, [-1, width, tf.shape(features)[-1]])  # (batch * N, W, C)

    def reused_pass(self, waveform, training=False) -> dict:
        """The whole pass with reused features: one backbone run, two heads."""
        features = self.branch_features("global", waveform, training)  # (batch, F, C)
        out = self.global_head(features, training)
        _, starts, classes = self.select(waveform, out["global"], out["framewise"])
        local = self.local_head(self.window_features(features, starts, tf.shape(waveform)[1]),
                                training)
        per_clip = tf.reshape(local["per_clip"],
                              [tf.shape(waveform)[0], self.n_clips, self.num_classes])
        return {**out, "clip_starts": starts, "selected_classes": classes,
                **self.fuse(out["global"], per_clip), "per_clip": per_clip}

    def call(self, waveform, training=None):
        self.check_waveform(waveform)
        self.select.check_inputs(waveform.shape, self.num_classes)
        waveform = tf.cast(waveform, tf.float32)
        if self.reuse_features:
            return self.reused_pass(waveform, training)
        out = self.global_stage(waveform, training=training and self.loss_mode == "joint")
        crops = tf.reshape(out.pop("crops"), [-1, self.crop_samples])  # (batch * N, crop_samples)
        per_clip = tf.reshape(self.local_stage(crops, training)["per_clip"],
                              [tf.shape(waveform)[0], self.n_clips, self.num_classes])
        return {**out, **self.fuse(out["global"], per_clip), "per_clip": per_clip}

    def stream_losses(self, outputs, labels):
        """Per-example losses (batch,): `global_loss`, `local_loss`, with distillation
        `distill_loss` (BCE of the global score on the stop-gradient target), and the
        trained `loss`."""
        global_loss = binary_crossentropy(labels, outputs["global"])
        local_loss = binary_crossentropy(labels, outputs["local"])
        loss = global_loss + local_loss if self.loss_mode == "joint" else local_loss
        losses = {"global_loss": global_loss, "local_loss": local_loss}
        if self.distill_weight:
            target = tf.stop_gradient(outputs[self.distill_target])
            losses["distill_loss"] = binary_crossentropy(target, outputs["global"])
            loss = loss + self.distill_weight * losses["distill_loss"]
        return {"loss": loss, **losses}

    def get_config(self):
        # A shared network is saved once: loading must give one object again, not two copies.
        local = (None if self.share_weights
                 else keras.saving.serialize_keras_object(self.local_backbone))
        return {**super().get_config(),
                "backbone": keras.saving.serialize_keras_object(self.global_backbone),
                "local_backbone": local, "share_weights": self.share_weights,
                "reuse_features": self.reuse_features,
                "distill_weight": self.distill_weight, "distill_target": self.distill_target,
                "n_clips": self.n_clips, "tau": self.tau, "loss_mode": self.loss_mode,
                "suppress_overlap": self.suppress_overlap, "selection": self.selection}
