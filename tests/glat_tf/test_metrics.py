"""mAP / mAUC / d-prime against sklearn, and classes without positives counted, not NaN."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from glat_tf.metrics import d_prime, tagging_scores


def test_equal_to_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 12)) < 0.2).astype(int)
    scores = np.clip(labels * 0.3 + rng.random((300, 12)), 0, 1)
    result = tagging_scores(labels, scores)
    assert result.mAP == pytest.approx(average_precision_score(labels, scores, average="macro"))
    assert result.mAUC == pytest.approx(roc_auc_score(labels, scores, average="macro"))
    assert result.skipped_classes == 0
    assert result.d_prime == pytest.approx(math.sqrt(2) * 0.0 + d_prime(result.mAUC))


def test_d_prime_values():
    assert d_prime(0.5) == pytest.approx(0.0)
    # Published pair: AUC 0.974 -> d' 2.742 (CNN10 + GL-AT, GLAT_SPEC section 7).
    assert d_prime(0.974) == pytest.approx(2.742, abs=0.01)


def test_classes_without_positives_are_skipped_and_counted():
    rng = np.random.default_rng(1)
    labels = (rng.random((50, 6)) < 0.3).astype(int)
    labels[:, 2] = 0
    labels[:, 4] = 1  # no negative: AUC undefined too
    scores = rng.random((50, 6))
    result = tagging_scores(labels, scores)
    assert result.skipped_classes == 2
    assert np.isnan(result.ap[[2, 4]]).all()
    keep = [0, 1, 3, 5]
    assert result.mAP == pytest.approx(average_precision_score(labels[:, keep], scores[:, keep]))
    assert not math.isnan(result.summary()["mAP"])


def test_bad_input():
    with pytest.raises(ValueError, match="labels.shape"):
        tagging_scores(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        tagging_scores(np.eye(3), np.full((3, 3), np.nan))
