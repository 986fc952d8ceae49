"""Frozen configuration records; derived values are properties, never stored twice."""

from __future__ import annotations

import dataclasses


def _from_mapping(cls, value, default=None, what="config"):
    """`value` as a `cls` record: the record itself, a (JSON) dict of some of its fields laid
    over `default`, or `default` when None. Unknown keys are an error naming them."""
    if value is None:
        return default if default is not None else cls()
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a {cls.__name__} or a dict, got {type(value).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - fields)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; {cls.__name__} has {sorted(fields)}")
    base = default if default is not None else cls()
    return dataclasses.replace(base, **value)


@dataclasses.dataclass(frozen=True)
class FrontendConfig:
    """The PANNs log-mel frontend (GLAT_SPEC section 8); `spec_augment` in training only."""

    sample_rate: int = 32000
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0
    amin: float = 1e-10
    spec_augment: bool = True

    def __post_init__(self):
        # LiteRT's RFFT2D only takes power-of-two lengths.
        if self.n_fft <= 0 or self.n_fft & (self.n_fft - 1):
            raise ValueError(f"n_fft must be a power of two, got n_fft={self.n_fft}")
        if self.hop_length <= 0:
            raise ValueError(f"hop_length must be positive, got hop_length={self.hop_length}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(
                f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, "
                f"fmax={self.fmax}, sample_rate={self.sample_rate}")

    @classmethod
    def of(cls, value, default: "FrontendConfig | None" = None) -> "FrontendConfig":
        """A FrontendConfig from itself, a dict of overrides of `default`, or None."""
        return _from_mapping(cls, value, default, "frontend")

    @classmethod
    def field_names(cls) -> frozenset:
        return frozenset(f.name for f in dataclasses.fields(cls))

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def frames_for(self, num_samples: int) -> int:
        """STFT frames of a centred (reflect-padded) transform of num_samples."""
        return num_samples // self.hop_length + 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PANNS_FRONTEND = FrontendConfig()
TALNET_FRONTEND = FrontendConfig(hop_length=800)  # 25 ms hop, 401 frames per 10 s


def arch_config(cls, value, what="arch"):
    """A backbone family's architecture record (see backbones/base.py) from itself or a dict."""
    return _from_mapping(cls, value, None, what)
