"""The export metadata (metadata.json, format glat-tf-litert/3): what export/ writes and
edge_runtime/ reads, as one frozen dataclass. NumPy-free and TensorFlow-free.

Units: rates in Hz, windows, crops and `clip_starts` in int32 samples from the start of
the model's input, tau in seconds. Since /3 the global model takes any number of samples
(at least one crop; resized per call) and `window_samples` is the window the stream
tags; a /2 folder (fixed 10 s input, zero-padded) is refused with "re-export". `variants` maps a variant (f32, f16, dyn, int8) to
its files by part: `global` (the window model), `local` (N crops), and with streaming
`global_chunk`, `local_chunk`, `global_head`, `local_head`, `local_crop`, `global_edge`,
`local_edge`.
A backbone-only export has n_clips 0 and no local parts: fused = global.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

FORMAT = "glat-tf-litert/3"
CLIP_STARTS_UNIT = "int32 samples"
FUSIONS = ("max_mean",)
EXACT_PARTS = ("global", "local")
STREAMING_PARTS = ("global_chunk", "local_chunk", "global_head", "local_head", "local_crop")
EDGE_PART = "local_edge"  # optional: only when the plan has an edge entry
GLOBAL_EDGE_PART = "global_edge"  # when the plan has global_edge_samples


class ContractError(ValueError):
    """metadata.json does not follow the contract; the message says where and what."""


def _fail(path, message):
    raise ContractError(f"{path}: {message}")


@dataclasses.dataclass(frozen=True)
class Label:
    index: int
    mid: str
    display_name: str


@dataclasses.dataclass(frozen=True)
class StreamingPlan:
    """The feature grid of the streaming models (export/streaming.py measures it).

    Grid step g covers samples [g * stride, (g + 1) * stride); a chunk model maps
    chunk_features * stride samples to chunk_features features, of which the first
    clean_left and last clean_right see the chunk's edges. With `edge_samples`, the
    local_edge model maps (2, edge_samples) to (2, edge_features, channels): row 0 from a
    crop's start gives its first clean_left features, row 1 from `edge_offset` samples into
    the crop gives its last clean_right; the rest of the crop's features are the stream's.
    """

    stride_samples: int
    chunk_features: int
    clean_left: int
    clean_right: int
    window_features: int
    crop_features: int
    channels: int
    edge_samples: int = 0
    edge_features: int = 0
    edge_offset: int = 0
    global_edge_samples: int = 0

    @property
    def exact_edges(self) -> bool:
        """The streamed window's first features can be made the exact model's."""
        return self.clean_left == 0 or self.global_edge_samples > 0

    def validate(self, path="metadata") -> "StreamingPlan":
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                _fail(path, f"streaming.{field.name} must be an integer >= 0, got {value!r}")
        if self.stride_samples < 1 or self.channels < 1:
            _fail(path, "streaming.stride_samples and channels must be >= 1")
        if self.clean_left + self.clean_right >= self.chunk_features:
            _fail(path, f"a chunk of {self.chunk_features} features has no clean ones between "
                        f"margins {self.clean_left} and {self.clean_right}")
        if not 0 < self.crop_features <= self.window_features:
            _fail(path, "streaming: need 0 < crop_features <= window_features")
        if self.edge_samples and (self.edge_features < self.clean_left + self.clean_right
                                  or self.edge_features > self.crop_features):
            _fail(path, f"streaming.edge_features {self.edge_features} must cover both margins "
                        f"and fit in a crop of {self.crop_features}")
        if self.global_edge_samples and (
                self.global_edge_samples % self.stride_samples
                or not self.clean_left < self.global_edge_samples // self.stride_samples
                <= self.window_features):
            _fail(path, f"streaming.global_edge_samples {self.global_edge_samples} must be a "
                        f"whole number of grid steps, more than clean_left and at most the "
                        f"window's {self.window_features}")
        return self


@dataclasses.dataclass(frozen=True)
class ExportMetadata:
    """metadata.json of one export folder. `from_json` validates; `to_json` writes.

    Example:
        meta = ExportMetadata.read("lite/")
        meta.files("int8", ("global", "local"))  # {"global": "global_int8.tflite", ...}
    """

    backbone: str
    sample_rate: int
    window_samples: int
    crop_samples: int
    n_clips: int
    tau: float
    num_classes: int
    frames: int
    labels: tuple
    variants: dict
    suppress_overlap: bool = True
    selection: str = "attention"
    frontend: dict = dataclasses.field(default_factory=dict)
    fusion: str = "max_mean"
    clip_starts_unit: str = CLIP_STARTS_UNIT
    streaming: StreamingPlan | None = None
    format: str = FORMAT

    @property
    def global_only(self) -> bool:
        return self.n_clips == 0

    @property
    def label_names(self) -> list[tuple[str, str]]:
        return [(label.display_name, label.mid) for label in self.labels]

    def validate(self, path="metadata") -> "ExportMetadata":
        if self.format != FORMAT:
            hint = " (an older export: re-export it with glat-export tflite)" if str(
                self.format).startswith("glat-tf-litert/") else ""
            _fail(path, f"format must be {FORMAT!r}, got {self.format!r}{hint}")
        if self.fusion not in FUSIONS:
            _fail(path, f"unknown fusion {self.fusion!r} (this runtime does {FUSIONS})")
        if self.clip_starts_unit != CLIP_STARTS_UNIT:
            _fail(path, f"clip_starts_unit must be {CLIP_STARTS_UNIT!r}")
        for name in ("sample_rate", "window_samples", "num_classes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                _fail(path, f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if len(self.labels) != self.num_classes:
            _fail(path, f"{len(self.labels)} labels for num_classes={self.num_classes}")
        if not isinstance(self.n_clips, int) or not 0 <= self.n_clips <= self.num_classes:
            _fail(path, f"need 0 <= n_clips <= num_classes, got {self.n_clips!r}")
        if self.n_clips and not 0 < self.crop_samples <= self.window_samples:
            _fail(path, f"need 0 < crop_samples <= window_samples, got {self.crop_samples} and "
                        f"{self.window_samples}")
        if not self.variants:
            _fail(path, "lists no variants")
        needed = EXACT_PARTS if self.n_clips else ("global",)
        for variant, files in self.variants.items():
            missing = [p for p in needed if p not in files]
            if missing:
                _fail(path, f"variant {variant!r} lacks parts {missing}")
        if self.streaming is not None:
            self.streaming.validate(path)
        return self

    def files(self, variant: str, parts) -> dict[str, str]:
        """{part: file name} of `variant`; a clear error naming what is missing."""
        if variant not in self.variants:
            raise ContractError(f"the export has variants {sorted(self.variants)}, not "
                                f"{variant!r}")
        files = self.variants[variant]
        missing = [p for p in parts if p not in files]
        if missing:
            hint = (": export with glat-export tflite --streaming"
                    if set(missing) & {*STREAMING_PARTS, EDGE_PART, GLOBAL_EDGE_PART} else "")
            raise ContractError(f"variant {variant!r} has no {missing}{hint}")
        return {p: files[p] for p in parts}

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["labels"] = [dataclasses.asdict(label) for label in self.labels]
        if self.streaming is None:
            del out["streaming"]
        return {"format": out.pop("format"), **out}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data, path="metadata") -> "ExportMetadata":
        if not isinstance(data, dict):
            _fail(path, f"must be a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            cls.validate(dataclasses.replace(_EMPTY, format=data.get("format")), path)
        names = {f.name for f in dataclasses.fields(cls)}
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in data]
        if missing:
            _fail(path, f"missing keys {missing}")
        values = {k: v for k, v in data.items() if k in names}
        try:
            values["labels"] = tuple(Label(int(r["index"]), str(r["mid"]), str(r["display_name"]))
                                     for r in data["labels"])
            if data.get("streaming") is not None:
                plan = data["streaming"]
                known = {f.name for f in dataclasses.fields(StreamingPlan)}
                values["streaming"] = StreamingPlan(**{k: v for k, v in plan.items()
                                                       if k in known})
        except (KeyError, TypeError, ValueError) as err:
            _fail(path, f"malformed labels or streaming entry: {err!r}")
        if not isinstance(values["variants"], dict) or not all(
                isinstance(f, dict) for f in values["variants"].values()):
            _fail(path, "variants must map each variant to {part: file}")
        return cls(**values).validate(path)

    @classmethod
    def from_json(cls, text: str, path="metadata") -> "ExportMetadata":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            _fail(path, f"is not valid JSON: {err}")
        return cls.from_dict(data, path)

    @classmethod
    def read(cls, folder) -> "ExportMetadata":
        """metadata.json of an export folder (or the file itself)."""
        path = pathlib.Path(os.fspath(folder))
        if path.is_dir():
            path = path / "metadata.json"
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            raise ContractError(f"no metadata.json at {path}: pass the folder glat-export "
                                "tflite wrote") from None
        return cls.from_json(text, str(path))

    def write(self, folder) -> pathlib.Path:
        path = pathlib.Path(folder) / "metadata.json"
        path.write_text(self.to_json())
        return path


_EMPTY = ExportMetadata(backbone="", sample_rate=1, window_samples=1, crop_samples=0, n_clips=0,
                        tau=0.0, num_classes=1, frames=1, labels=(), variants={})
