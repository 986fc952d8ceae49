"""What runs a model for the file Tagger: one backend per model kind, each answering a batch
of equal-length inputs (any length >= the crop) with the model's own output names.

    backend(inputs (B, samples) float32) -> {"fused", "global", "local", "framewise",
                                             "clip_starts", "selected_classes"}

TensorFlow is imported only by the `.keras` and SavedModel backends; the LiteRT backend
runs the edge runtime, so a device install tags files with it.
"""

from __future__ import annotations

import pathlib

import numpy as np

from glat_core.audio import shortest_input

KINDS = ".keras file, SavedModel folder or LiteRT export folder (metadata.json)"


class Backend:
    """labels: (name, mid) pairs; sample_rate; crop_samples (0 without a local stream)."""

    labels: list
    sample_rate: int
    crop_samples: int

    @property
    def has_local(self) -> bool:
        return self.crop_samples > 0

    @property
    def min_samples(self) -> int:
        """The shortest input the model answers (shorter inputs are end-padded with zeros)."""
        return shortest_input(self.crop_samples, self.sample_rate)

    def __call__(self, inputs: np.ndarray) -> dict:
        raise NotImplementedError


class KerasBackend(Backend):
    def __init__(self, path, model=None):
        from glat_tf import class_names
        from glat_tf.loading import load_model
        self.model = model if model is not None else load_model(path)
        labels, _ = class_names.resolve(self.model.num_classes, model=self.model,
                                        model_path=path)
        self.labels = list(zip(labels.names, labels.mids))
        self.sample_rate = int(self.model.sample_rate)
        self.crop_samples = int(self.model.crop_samples)

    def __call__(self, inputs):
        return {k: np.asarray(v) for k, v in self.model(inputs, training=False).items()}


class SavedModelBackend(Backend):
    def __init__(self, folder: pathlib.Path):
        import tensorflow as tf
        from edge_runtime.contract import ContractError, SavedModelFacts
        from glat_tf.data.labels import LabelMap
        facts = SavedModelFacts.read(folder / "assets")  # before loading: a clear error first
        labels = LabelMap.from_csv(folder / "assets" / "labels.csv")
        if len(labels) != facts.num_classes:
            raise ContractError(f"{folder}: assets/labels.csv has {len(labels)} classes, "
                                f"model.json {facts.num_classes}")
        self._tf = tf
        self.serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
        self.labels = list(zip(labels.names, labels.mids))
        self.sample_rate = facts.sample_rate
        self.crop_samples = facts.crop_samples

    def __call__(self, inputs):
        out = self.serve(waveform=self._tf.constant(inputs))
        return {k: v.numpy() for k, v in out.items()}


class LiteBackend(Backend):
    """The edge runtime on a LiteRT export folder. Exact mode answers each window at its own
    length (its global model takes any length); streaming mode (the runtime's default when
    the export has its models) streams the whole recording hop by hop, as a device would,
    and answers the windows the stream tags (`stream`)."""

    def __init__(self, folder, variant: str, threads: int = 1, mode: str = "auto",
                 crop_budget: int | None = None):
        from edge_runtime import Pipeline
        budget = {} if crop_budget is None else {"crop_budget": crop_budget}
        self.pipeline = Pipeline.from_export(folder, variant, mode=mode, threads=threads,
                                             **budget)
        self.labels = self.pipeline.labels
        self.sample_rate = self.pipeline.sample_rate
        self.crop_samples = self.pipeline.crop_samples if self.pipeline.n_clips else 0
        self.window_samples = self.pipeline.window_samples  # the window it was exported for
        self.streaming = self.pipeline.mode == "streaming"

    def __call__(self, inputs):
        return stack_results([self.pipeline.exact(x) for x in inputs], self.has_local)

    def stream(self, waveform, window: int, hop: int) -> tuple[list, dict]:
        """([start, end) spans, outputs) of the streaming mode over `waveform`: one answer
        every `hop` samples once the stream holds a whole window, and the exact pipeline on
        the last window (all of a recording shorter than the window), so the file's end is
        always tagged."""
        from edge_runtime import ArraySource, StreamRunner
        if window != self.pipeline.window_samples:
            raise ValueError(f"streaming tags windows of the export's "
                             f"{self.pipeline.window_samples / self.sample_rate} s; pass that "
                             "window (or --exact for other windows)")
        events = StreamRunner(self.pipeline, hop / self.sample_rate).run(
            ArraySource([waveform], self.sample_rate), final=True)
        kept = [e.result for e in events if not e.partial]
        if kept[-1].end < len(waveform):
            # The stream's last window ends on its feature grid, up to one step before the
            # file does: the file's end gets the exact pipeline on its last window instead.
            tail = len(waveform) - window
            kept[-1] = self.pipeline.exact(waveform[tail:], start=tail)
        return [(r.start, r.end) for r in kept], stack_results(kept, self.has_local)


def stack_results(results, has_local: bool) -> dict:
    """The edge runtime's HopResults as the model's batched outputs (clip_starts from each
    answer's own start)."""
    out = {"fused": np.stack([r.fused for r in results]),
           "global": np.stack([r.global_ for r in results]),
           "framewise": [r.framewise for r in results]}
    if has_local:
        out.update(local=np.stack([r.local for r in results]),
                   clip_starts=np.stack([r.clip_starts for r in results]),
                   selected_classes=np.stack([r.selected_classes for r in results]))
    return out


def saved_model_folder(path: pathlib.Path) -> pathlib.Path | None:
    """A SavedModel folder, or TF Serving's base folder (its highest version)."""
    if (path / "saved_model.pb").is_file():
        return path
    versions = sorted((p for p in path.iterdir() if p.name.isdigit()
                       and (p / "saved_model.pb").is_file()), key=lambda p: int(p.name))
    return versions[-1] if versions else None


def open_backend(path, variant: str = "f32", threads: int = 1, mode: str = "auto",
                 crop_budget: int | None = None) -> Backend:
    """The backend for whatever model `path` is; a clear error for anything else. `mode`
    ("auto", "exact", "streaming") and `crop_budget` (None: the runtime's default) are the
    LiteRT folder's edge runtime settings."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model {path} does not exist (a {KINDS})")
    if path.is_file() and path.suffix == ".keras":
        return KerasBackend(path)
    if path.is_dir() and (path / "metadata.json").is_file():
        return LiteBackend(path, variant, threads, mode, crop_budget)
    if path.is_dir() and saved_model_folder(path) is not None:
        return SavedModelBackend(saved_model_folder(path))
    raise ValueError(f"{path} is not a {KINDS}")
