"""The experiment table's rows as FitConfig changes: GL-AT, its controls and its variants.

One table for train/experiments.py (which trains them) and bench/train_throughput.py
(which measures each one's cost per step, so compute-matched steps come from measurements).
"""

from __future__ import annotations

# GL-AT variants: {run name: FitConfig fields}. `cheap_local` halves the local stream's width
# (about a quarter of its multiply-adds), the variant the issue calls "a local stream on a
# cheaper frontend or backbone".
GLAT_VARIANTS = {
    "glat": {},
    "glat_shared": {"share_weights": True},
    "glat_distill": {"distill_weight": 1.0, "distill_target": "fused"},
    "glat_shared_distill": {"share_weights": True, "distill_weight": 1.0,
                            "distill_target": "fused"},
}


def cheap_local(config: dict) -> dict:
    """FitConfig fields of the variant whose local stream is the same preset at half width."""
    from glat_tf.backbones import registry
    _, arch = registry.get(config["backbone"])
    kwargs = {**config.get("backbone_kwargs", {}), "width": arch.get("width", 1.0) / 2}
    return {"local_backbone": config["backbone"], "local_backbone_kwargs": kwargs}


def glat_variants(config: dict) -> dict:
    return {**GLAT_VARIANTS, "glat_cheap_local": cheap_local(config)}


def row_specs(config: dict, ratio: float) -> dict:
    """{run name: FitConfig changes}; the compute-matched baseline gets steps x the measured
    GL-AT / backbone cost ratio."""
    return {
        "baseline": {"backbone_only": True},
        **glat_variants(config),
        "glat_random": {"selection": "random"},
        "baseline_matched": {"backbone_only": True, "steps": int(round(config["steps"] * ratio))},
        "baseline_crop": {"backbone_only": True, "random_crop": config["tau"]},
    }


# The real-recordings comparison (train/realset_experiments.py). Zoom-in: a global stream at a
# quarter of the baseline's resolution (16 mel bins, 40 ms hop) picks N=2 windows of 1 s that
# a local stream hears at 48 mel bins and a 10 ms hop (3x the baseline's cost per second), so
# the pair costs less than the baseline per clip (bench/model_cost.py multiply-adds).
ZOOM_GLOBAL = {"n_mels": 16, "hop_length": 640}
ZOOM_LOCAL = {"n_mels": 48, "hop_length": 160}


def zoom_in(config: dict) -> dict:
    """FitConfig fields of the zoom-in variant of `config` (a 16 kHz preset)."""
    frontend = config.get("backbone_kwargs", {})
    return {"backbone_kwargs": {**frontend, **ZOOM_GLOBAL}, "local_backbone": config["backbone"],
            "local_backbone_kwargs": {**frontend, **ZOOM_LOCAL}, "n_clips": 2, "tau": 1.0}


# Reused features with N=5 windows of 1 s instead of 3 of 2 s: the 2 s windows cover 60 % of
# the clip, so random windows find the events about as often as attention does, and a short
# event is pooled with 2 s of background (round-2 measurements, results/realset_results.md).
SHORT_WINDOWS = {"n_clips": 5, "tau": 1.0}
# 28 mel bins instead of 32: the baseline at zoom-in's inference cost (48.2 M multiply-adds
# per clip against 56.8 M; bench/model_cost.py).
NARROW_MELS = 28
# 52 mel bins: the baseline at shared weights' inference cost (92.3 M multiply-adds per clip
# against its 91 M by today's counter; 32 bins: 57.0 M).
WIDE_MELS = 52


def realset_rows(config: dict) -> dict:
    """{run name: FitConfig changes} of the real-recordings table, before the
    compute-matched baselines (whose steps come from the measured CPU-seconds)."""
    zoom = zoom_in(config)
    reuse = {"share_weights": True, "reuse_features": True}
    return {
        "baseline": {"backbone_only": True},
        "baseline_narrow": {"backbone_only": True, "backbone_kwargs": {
            **config.get("backbone_kwargs", {}), "n_mels": NARROW_MELS}},
        "baseline_wide": {"backbone_only": True, "backbone_kwargs": {
            **config.get("backbone_kwargs", {}), "n_mels": WIDE_MELS}},
        "glat_reuse": {"share_weights": True, "reuse_features": True},
        "glat_reuse_random": {"share_weights": True, "reuse_features": True,
                              "selection": "random"},
        "glat_zoom": zoom,
        "glat_zoom_random": {**zoom, "selection": "random"},
        "glat_shared": {"share_weights": True},
        "glat_shared_random": {"share_weights": True, "selection": "random"},
        "glat_reuse_short": {**reuse, **SHORT_WINDOWS},
        "glat_reuse_short_random": {**reuse, **SHORT_WINDOWS, "selection": "random"},
    }
