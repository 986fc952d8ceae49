"""Shared test set-up: quiet TensorFlow, fixed seeds, paths to the shipped test data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.paths import DATA  # noqa: E402,F401 (fixtures and helpers read it here)


@pytest.fixture
def clip_path():
    return DATA / "R9_ZSCveAHg_7s.wav"


@pytest.fixture(autouse=True)
def _seed():
    import keras
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
