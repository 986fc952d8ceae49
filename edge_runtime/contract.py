"""The records export/ writes beside its models and their readers read, each a versioned,
validated frozen dataclass: metadata.json of a LiteRT folder (ExportMetadata, format
glat-tf-litert/3, read by edge_runtime/), assets/model.json of a SavedModel
(SavedModelFacts) and single_file.json of the MediaPipe file (SingleFileRecord).
NumPy-free and TensorFlow-free.

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


def _check_format(record_class, value, path) -> None:
    """`value` must be the class's format; an older version of it gets "re-export"."""
    expected = record_class.__dataclass_fields__["format"].default
    if value != expected:
        hint = (f" (an older export: re-export it with {record_class.COMMAND})"
                if str(value).startswith(expected.rsplit("/", 1)[0] + "/") else "")
        _fail(path, f"format must be {expected!r}, got {value!r}{hint}")


def _check_positive(record, names, path) -> None:
    for name in names:
        value = getattr(record, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            _fail(path, f"{name} must be a positive integer, got {value!r}")


class Record:
    """A versioned JSON record an export writes beside its models: `FILE` in the folder,
    `COMMAND` the export that writes it, a `format` field "<name>/<version>", `validate`.
    A subclass with nested fields overrides `to_dict` and `from_dict`."""

    FILE = ""
    COMMAND = ""

    def validate(self, path=None):
        """The record itself if it follows the contract; else a ContractError naming `path`."""
        _check_format(type(self), self.format, path or self.FILE)
        self.check(path or self.FILE)
        return self

    def check(self, path) -> None:
        raise NotImplementedError

    def to_dict(self) -> dict:
        out = {k: list(v) if isinstance(v, tuple) else v  # as JSON reads them back
               for k, v in dataclasses.asdict(self).items()}
        return {"format": out.pop("format"), **out}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def known_values(cls, data, path) -> dict:
        """The dataclass's own keys of `data` (others ignored), after checking the format
        and that every required key is there."""
        if not isinstance(data, dict):
            _fail(path, f"must be a JSON object, got {type(data).__name__}")
        _check_format(cls, data.get("format"), path)
        fields = dataclasses.fields(cls)
        required = [f.name for f in fields if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in data]
        if missing:
            _fail(path, f"missing keys {missing}")
        names = {f.name for f in fields}
        return {k: v for k, v in data.items() if k in names}

    @classmethod
    def from_dict(cls, data, path=None):
        values = cls.known_values(data, path or cls.FILE)
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**values).validate(path or cls.FILE)

    @classmethod
    def from_json(cls, text: str, path=None):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            _fail(path or cls.FILE, f"is not valid JSON: {err}")
        return cls.from_dict(data, path or cls.FILE)

    @classmethod
    def read(cls, folder):
        """The record of an export folder (or the file itself)."""
        path = pathlib.Path(os.fspath(folder))
        if path.is_dir():
            path = path / cls.FILE
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            raise ContractError(f"no {cls.FILE} at {path}: pass the folder {cls.COMMAND} "
                                "wrote") from None
        return cls.from_json(text, str(path))

    def write(self, folder) -> pathlib.Path:
        path = pathlib.Path(folder) / self.FILE
        path.write_text(self.to_json())
        return path


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSizes:
    """What an exported model is fixed to (export/plan.py states it): the backbone's name,
    rate, input window, crop, N, tau, classes, frames of the window, the selection's
    overlap rule and the frontend's settings. n_clips and crop_samples are 0 without a
    local stream (a backbone-only export)."""

    backbone: str
    sample_rate: int
    window_samples: int
    crop_samples: int
    n_clips: int
    tau: float
    num_classes: int
    frames: int
    suppress_overlap: bool = True
    frontend: dict = dataclasses.field(default_factory=dict)

    def check_sizes(self, path) -> None:
        _check_positive(self, ("sample_rate", "window_samples", "num_classes"), path)
        if not isinstance(self.n_clips, int) or not 0 <= self.n_clips <= self.num_classes:
            _fail(path, f"need 0 <= n_clips <= num_classes, got {self.n_clips!r}")
        if self.n_clips and not 0 < self.crop_samples <= self.window_samples:
            _fail(path, f"need 0 < crop_samples <= window_samples, got {self.crop_samples} and "
                        f"{self.window_samples}")


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
class ExportMetadata(ModelSizes, Record):
    """metadata.json of one export folder. `from_json` validates; `to_json` writes.

    Example:
        meta = ExportMetadata.read("lite/")
        meta.files("int8", ("global", "local"))  # {"global": "global_int8.tflite", ...}
    """

    labels: tuple
    variants: dict
    selection: str = "attention"
    fusion: str = "max_mean"
    clip_starts_unit: str = CLIP_STARTS_UNIT
    streaming: StreamingPlan | None = None
    format: str = FORMAT
    FILE = "metadata.json"
    COMMAND = "glat-export tflite"

    @property
    def global_only(self) -> bool:
        return self.n_clips == 0

    @property
    def label_names(self) -> list[tuple[str, str]]:
        return [(label.display_name, label.mid) for label in self.labels]

    def validate(self, path="metadata") -> "ExportMetadata":
        _check_format(type(self), self.format, path)
        if self.fusion not in FUSIONS:
            _fail(path, f"unknown fusion {self.fusion!r} (this runtime does {FUSIONS})")
        if self.clip_starts_unit != CLIP_STARTS_UNIT:
            _fail(path, f"clip_starts_unit must be {CLIP_STARTS_UNIT!r}")
        self.check_sizes(path)
        if len(self.labels) != self.num_classes:
            _fail(path, f"{len(self.labels)} labels for num_classes={self.num_classes}")
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

    @classmethod
    def from_dict(cls, data, path="metadata") -> "ExportMetadata":
        values = cls.known_values(data, path)
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


@dataclasses.dataclass(frozen=True)
class SavedModelFacts(Record):
    """assets/model.json of a SavedModel export (format glat-tf-saved-model/1): what a client
    needs beside assets/labels.csv to cut audio for the served signature.

    `outputs` are the signature's output keys; `crop_samples` and `n_clips` are 0 for a
    backbone-only model; `min_samples` is the shortest input the signature accepts (one
    crop, or one second without a local stream).
    """

    FILE, COMMAND = "model.json", "glat-export saved-model"
    sample_rate: int
    num_classes: int
    n_clips: int
    crop_samples: int
    min_samples: int
    outputs: tuple
    format: str = "glat-tf-saved-model/1"

    def check(self, path) -> None:
        _check_positive(self, ("sample_rate", "num_classes", "min_samples"), path)
        if not isinstance(self.n_clips, int) or not 0 <= self.n_clips <= self.num_classes:
            _fail(path, f"need 0 <= n_clips <= num_classes, got {self.n_clips!r}")
        if not isinstance(self.crop_samples, int) or (self.crop_samples > 0) != (self.n_clips > 0):
            _fail(path, f"crop_samples {self.crop_samples!r} and n_clips {self.n_clips}: a crop "
                        "exactly when there are clips")
        if self.min_samples < self.crop_samples:
            _fail(path, f"min_samples {self.min_samples} is shorter than a crop")
        if not isinstance(self.outputs, tuple) or "global" not in self.outputs:
            _fail(path, f"outputs must list the signature's keys, `global` among them, got "
                        f"{self.outputs!r}")


@dataclasses.dataclass(frozen=True)
class SingleFileRecord(ModelSizes, Record):
    """single_file.json beside the MediaPipe single-file models (format
    glat-tf-single-file/2): the sizes the file is fixed to, its heads in output order
    (`outputs`) and `variants` {variant: file name}. Units as in ExportMetadata."""

    FILE, COMMAND = "single_file.json", "glat-export tflite --single-file"
    outputs: tuple
    variants: dict
    format: str = "glat-tf-single-file/2"

    def check(self, path) -> None:
        self.check_sizes(path)
        _check_positive(self, ("frames", "n_clips"), path)  # the file is GL-AT's whole pass
        if not self.outputs or not all(isinstance(o, str) for o in self.outputs):
            _fail(path, f"outputs must name the heads, got {self.outputs!r}")
        if not isinstance(self.variants, dict) or not self.variants or not all(
                isinstance(f, str) for f in self.variants.values()):
            _fail(path, "variants must map each variant to its file name")
