"""One GL-AT hop on LiteRT: global model, the N windows it picks, local model on them as a batch, fusion."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
from ai_edge_litert.interpreter import Interpreter

METADATA_FORMAT = "glat-tf-litert/1"
REQUIRED_KEYS = ("backbone", "sample_rate", "window_samples", "crop_samples", "n_clips", "tau",
                 "num_classes", "labels", "fusion")
GLOBAL_OUTPUTS = ("clipwise", "framewise", "clip_starts", "selected_classes")


def max_mean(scores: np.ndarray, axis: int) -> np.ndarray:
    """PANNs' pooling P, as in glat_tf: (max + mean) / 2 along `axis`."""
    return (scores.max(axis=axis) + scores.mean(axis=axis, dtype=np.float32)) / np.float32(2)


@dataclasses.dataclass
class HopResult:
    """Scores of one window: `global_`, `local`, `fused` (L,), `framewise` (T', L),
    `starts` (N,) samples from the window's start, `classes` (N,); in streaming mode
    `crop_exact` (N,) tells which picks the local model scored on their crop."""

    global_: np.ndarray
    local: np.ndarray
    fused: np.ndarray
    framewise: np.ndarray
    starts: np.ndarray
    classes: np.ndarray
    crop_exact: np.ndarray | None = None


def _metadata_error(path, message):
    return ValueError(f"{path}: {message}")


def check_metadata(meta: dict, path="metadata") -> dict:
    """Validates an exported pair's metadata.json (contract glat-tf-litert/1); returns it."""
    if not isinstance(meta, dict) or meta.get("format") != METADATA_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise _metadata_error(path, f"format must be {METADATA_FORMAT!r}, got {found!r}")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise _metadata_error(path, f"missing keys {missing}")
    if meta["fusion"] != "max_mean":
        raise _metadata_error(path, f"unknown fusion {meta['fusion']!r} (this runtime does max_mean)")
    if len(meta["labels"]) != meta["num_classes"]:
        raise _metadata_error(path, f"{len(meta['labels'])} labels for num_classes="
                                    f"{meta['num_classes']}")
    if not 0 < meta["crop_samples"] <= meta["window_samples"]:
        raise _metadata_error(path, f"need 0 < crop_samples <= window_samples, got "
                                    f"{meta['crop_samples']} and {meta['window_samples']}")
    return meta


class LiteModel:
    """A LiteRT signature runner with its one input's shape checked and (de)quantization handled."""

    def __init__(self, model, threads: int, expect_shape, outputs, what: str):
        source = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {
            "model_path": os.fspath(model)}
        try:
            interpreter = Interpreter(num_threads=threads, **source)
            self.runner = interpreter.get_signature_runner("serving_default")
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"{what} model {source.get('model_path', '<bytes>')}: {err}") from err
        inputs = self.runner.get_input_details()
        if len(inputs) != 1:
            raise ValueError(f"{what} model must take one input, it takes {sorted(inputs)}")
        (self.input_name, self.input), = inputs.items()
        shape = tuple(int(d) for d in self.input["shape"])
        if shape != tuple(expect_shape):
            raise ValueError(f"{what} model takes input {self.input_name} of shape {list(shape)}, "
                             f"but metadata.json says {list(expect_shape)}")
        self.output = self.runner.get_output_details()
        missing = [name for name in outputs if name not in self.output]
        if missing:
            raise ValueError(f"{what} model lacks outputs {missing}; it has {sorted(self.output)}")

    def __call__(self, x: np.ndarray) -> dict:
        scale, zero = self.input["quantization"]
        if scale:  # an integer input tensor: quantize as the converter said
            info = np.iinfo(self.input["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(self.input["dtype"])
        out = self.runner(**{self.input_name: x})
        for name, value in out.items():
            scale, zero = self.output[name]["quantization"]
            if scale and np.issubdtype(value.dtype, np.integer) and value.dtype.itemsize == 1:
                out[name] = (value.astype(np.float32) - zero) * np.float32(scale)
        return out


class Tagger:
    """GL-AT on one window with an exported LiteRT pair (no TensorFlow needed).

    `tagger(window)` takes float32 (window_samples,) and returns a HopResult:
    global scores, the N windows the global model chose cut from `window`, the
    local model run on them as one (N, crop_samples) batch, fused by max_mean.
    `record(...)` turns a result into the JSON line's dict.

    Example:
        tagger = Tagger("global_f32.tflite", "local_f32.tflite", read_metadata("global_f32.tflite"))
        result = tagger(np.zeros(tagger.window_samples, np.float32))
        result.fused.shape  # (num_classes,)
    """

    def __init__(self, global_model, local_model, metadata: dict, threads: int = 1):
        self._setup(metadata, threads)
        self.global_model = LiteModel(global_model, threads, (1, self.window_samples),
                                   GLOBAL_OUTPUTS, "global")
        self.local_model = LiteModel(local_model, threads, (self.n_clips, self.crop_samples),
                                  ("clipwise",), "local")
        self._crops = np.zeros((self.n_clips, self.crop_samples), np.float32)

    def _setup(self, metadata: dict, threads: int) -> None:
        meta = check_metadata(metadata)
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        self.metadata = meta
        self.sample_rate = int(meta["sample_rate"])
        self.window_samples = int(meta["window_samples"])
        self.crop_samples = int(meta["crop_samples"])
        self.n_clips = int(meta["n_clips"])
        self.num_classes = int(meta["num_classes"])
        self.labels = [(str(item["display_name"]), str(item["mid"])) for item in meta["labels"]]
        # The audio a call needs, ending at the stream's newest sample: here one window.
        self.history_samples = self.window_samples

    def reset(self) -> None:
        """Forget the stream (nothing to forget: every window is tagged on its own)."""

    def __call__(self, window: np.ndarray, stream_end: int | None = None) -> HopResult:
        window = np.asarray(window, dtype=np.float32)
        if window.shape != (self.window_samples,):
            raise ValueError(f"window must have shape ({self.window_samples},), got {window.shape}")
        g = self.global_model(window[None, :])
        global_scores = g["clipwise"][0].astype(np.float32)
        if global_scores.shape != (self.num_classes,):
            raise ValueError(f"global model gives {global_scores.shape[-1]} classes, metadata.json "
                             f"says {self.num_classes}")
        # The model already clamps; clamping again keeps a bad model from slicing out of range.
        starts = np.clip(g["clip_starts"][0].astype(np.int64), 0,
                         self.window_samples - self.crop_samples)
        for i, start in enumerate(starts):
            self._crops[i] = window[start:start + self.crop_samples]
        per_clip = self.local_model(self._crops)["clipwise"].astype(np.float32)  # (N, L)
        local_scores = max_mean(per_clip, axis=0)
        fused = max_mean(np.stack([global_scores, local_scores]), axis=0)
        return HopResult(global_scores, local_scores, fused, g["framewise"][0], starts,
                         g["selected_classes"][0].astype(np.int64))

    def record(self, result: HopResult, time: float, partial: bool, top_k: int = 5,
               nan_samples: int = 0) -> dict:
        """The JSON line of a window ending at stream `time` seconds.

        Window times are in stream seconds, clamped at 0 while the window still
        reaches before the stream's start (the zero padding of a partial window).
        `nan_samples` (frames of non-finite input replaced by 0 since the last line)
        is written only when non-zero.
        """
        order = np.argsort(-result.fused, kind="stable")[:max(0, top_k)]
        top = [{"label": self.labels[i][0], "mid": self.labels[i][1],
                "fused": round(float(result.fused[i]), 5),
                "global": round(float(result.global_[i]), 5),
                "local": round(float(result.local[i]), 5)} for i in order]
        window_start = time - self.window_samples / self.sample_rate
        windows = []
        for start, cls in zip(result.starts, result.classes):
            begin = window_start + start / self.sample_rate
            end = begin + self.crop_samples / self.sample_rate
            windows.append({"label": self.labels[int(cls)][0], "start": round(max(begin, 0.0), 3),
                            "end": round(max(end, 0.0), 3)})
        line = {"time": round(time, 3), "partial": bool(partial), "top": top, "windows": windows}
        if nan_samples:
            line["nan_samples"] = int(nan_samples)
        return line

    def json_line(self, *args, **kwargs) -> str:
        return json.dumps(self.record(*args, **kwargs), ensure_ascii=False)
