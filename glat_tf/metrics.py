"""AudioSet tagging metrics as PANNs reports them: mAP, mAUC, d-prime (GLAT_SPEC section 6)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score


@dataclasses.dataclass(frozen=True)
class TaggingScores:
    """Per-class AP and AUC (NaN where a class has no positive or no negative) and their means."""

    ap: np.ndarray
    auc: np.ndarray
    skipped_classes: int

    @property
    def mAP(self) -> float:  # noqa: N802 (the field's name for it)
        return _nanmean(self.ap)

    @property
    def mAUC(self) -> float:  # noqa: N802
        return _nanmean(self.auc)

    @property
    def d_prime(self) -> float:
        return d_prime(self.mAUC)

    def summary(self) -> dict:
        return {"mAP": self.mAP, "mAUC": self.mAUC, "d_prime": self.d_prime,
                "skipped_classes": self.skipped_classes}


def _nanmean(values: np.ndarray) -> float:
    valid = values[~np.isnan(values)]
    return float(valid.mean()) if valid.size else float("nan")


def d_prime(auc: float) -> float:
    """sqrt(2) * Phi^-1(AUC): the separation of two unit Gaussians with that AUC."""
    return math.sqrt(2.0) * float(norm.ppf(auc))


def tagging_scores(labels, scores) -> TaggingScores:
    """labels (clips, classes) in {0, 1}, scores (clips, classes) -> TaggingScores.

    A class without a positive (or without a negative) has no AP/AUC: it is left
    out of the means and counted in `skipped_classes`, never averaged in as NaN.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 2:
        raise ValueError(f"labels and scores must both be (clips, classes), got "
                         f"labels.shape={labels.shape}, scores.shape={scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    labels = (labels > 0.5).astype(np.int32)
    num_classes = labels.shape[1]
    ap = np.full(num_classes, np.nan)
    auc = np.full(num_classes, np.nan)
    positives = labels.sum(axis=0)
    defined = (positives > 0) & (positives < labels.shape[0])
    for k in np.flatnonzero(defined):
        ap[k] = average_precision_score(labels[:, k], scores[:, k])
        auc[k] = roc_auc_score(labels[:, k], scores[:, k])
    return TaggingScores(ap=ap, auc=auc, skipped_classes=int(num_classes - defined.sum()))
