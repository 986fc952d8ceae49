"""Fuzzing the PyTorch checkpoint reader: random and mutated bytes load or raise CheckpointError."""

import tempfile
from pathlib import Path

from hypothesis import strategies as st

from tests.fuzzing import fuzz, mutated, raises_only
from glat_tf.convert.torch_zip import CheckpointError, load_torch_file
from tests.hostile_checkpoints import (CASES, FLOATS, state, tensor, valid_legacy, valid_zip,
                                 zip_file)

PICKLES = [state(w=tensor("0", (2, 3), (3, 1), numel=6)),
           state(a=tensor("0", (3,), (1,), numel=6), b=tensor("0", (3,), (1,), offset=3, numel=6))]
FILES = [valid_zip(), valid_legacy()] + [data for data, _ in CASES.values()]


def _load(data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.pth"
        path.write_bytes(data)
        raises_only(CheckpointError, lambda: load_torch_file(path))


def test_random_bytes():
    fuzz(_load, st.binary(max_size=2048))


def test_mutated_files():
    """Whole files mutated: legacy files have no checksum, so these reach the unpickler."""
    fuzz(_load, mutated(FILES))


def test_mutated_pickles_in_a_valid_zip():
    """The pickle mutated, then zipped with its storage: past zip's CRCs, into every opcode."""
    fuzz(lambda payload: _load(zip_file(payload, [("0", FLOATS.tobytes())])), mutated(PICKLES))
