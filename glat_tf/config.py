"""Frozen configuration records; derived values are properties, never stored twice."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class FrontendConfig:
    """The PANNs log-mel frontend (GLAT_SPEC section 8)."""

    sample_rate: int = 32000
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0
    amin: float = 1e-10

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
