"""One export of one model, asked of the model once (TaggingModel's facts: n_clips,
crop_samples, min_samples, output_keys, selection): the checks every export makes, the
default window, the parts and outputs each artifact holds and the sizes its record states.
Light at import (NumPy only): the CLI reads the default window without loading TensorFlow."""

from __future__ import annotations

import dataclasses

import numpy as np

DEFAULT_WINDOW_SECONDS = 10.0  # the input window of the LiteRT and MediaPipe exports
# Outputs that need the local stream (the fusion reads it): a LiteRT global model serves
# the model's other outputs.
LOCAL_STREAM_OUTPUTS = ("fused", "local", "per_clip")


def global_outputs(model) -> tuple:
    """The outputs of the global stage (`global`, `framewise`, and for GL-AT the windows)."""
    return tuple(k for k in model.output_keys if k not in LOCAL_STREAM_OUTPUTS)


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    """A model checked for export with its labels (a LabelMap) and input window (samples).

    Example:
        plan = ExportPlan.of(model, labels)  # window: DEFAULT_WINDOW_SECONDS
        plan.streams  # ("global", "local"); ("global",) for a baseline
        plan.facts()["frames"]  # frames of the window, for the export's record
    """

    model: object
    labels: object
    window_samples: int

    @classmethod
    def of(cls, model, labels, window_samples: int | None = None) -> "ExportPlan":
        if model.selection != "attention":
            raise ValueError(f"selection={model.selection!r} is the random control experiment; "
                             "only selection='attention' models are exported")
        if len(labels) != model.num_classes:
            raise ValueError(f"{len(labels)} labels for a model of {model.num_classes} classes")
        window = window_samples or int(round(DEFAULT_WINDOW_SECONDS * model.sample_rate))
        return cls(model, labels, int(window))

    @property
    def streams(self) -> tuple:
        """The LiteRT models of the exact pass: a baseline has no local stream."""
        return ("global", "local") if self.model.n_clips else ("global",)

    def label_rows(self) -> list[dict]:
        return [{"index": i, "mid": mid, "display_name": name}
                for i, (mid, name) in enumerate(zip(self.labels.mids, self.labels.names))]

    def facts(self) -> dict:
        """Sizes an exported model is fixed to: rate, window, crop, N, tau, frames of the
        window (ExportMetadata's and SingleFileRecord's fields)."""
        model = self.model
        if self.window_samples < model.crop_samples:
            raise ValueError(f"window_samples={self.window_samples} is shorter than one crop "
                             f"of tau={model.tau} s ({model.crop_samples} samples)")
        frontend = model.global_backbone.frontend_config
        frames = model.global_backbone(np.zeros([1, self.window_samples], np.float32),
                                       training=False)["framewise_logits"].shape[1]
        return {"backbone": model.global_backbone.preset or type(model.global_backbone).__name__,
                "sample_rate": int(model.sample_rate), "window_samples": self.window_samples,
                "crop_samples": int(model.crop_samples), "n_clips": int(model.n_clips),
                "tau": float(model.tau), "num_classes": int(model.num_classes),
                "frames": int(frames), "suppress_overlap": model.suppress_overlap,
                "frontend": {"n_fft": frontend.n_fft, "hop_length": frontend.hop_length,
                             "n_mels": frontend.n_mels, "fmin": frontend.fmin,
                             "fmax": frontend.fmax}}

    def saved_model_facts(self):
        """assets/model.json of the SavedModel (its signature takes any length)."""
        from edge_runtime.contract import SavedModelFacts
        model = self.model
        return SavedModelFacts(sample_rate=int(model.sample_rate),
                               num_classes=int(model.num_classes), n_clips=int(model.n_clips),
                               crop_samples=int(model.crop_samples),
                               min_samples=int(model.min_samples),
                               outputs=tuple(model.output_keys)).validate()
