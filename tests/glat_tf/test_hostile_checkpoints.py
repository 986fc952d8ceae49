"""The hand-made hostile checkpoints: each refused in one line naming file and problem, in
bounded memory, and by the PANNs CLI with exit code 2 and no traceback (unless --debug)."""

import re

import numpy as np
import pytest

from glat_tf.convert import panns, restricted_pickle
from glat_tf.convert.torch_zip import CheckpointError, load_torch_file
from tests.hostile_checkpoints import CASES, FLOATS, state, tensor, valid_legacy, valid_zip, zip_file
from tests.limits import run_limited


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """Every hostile case as a .pth file; the opcode cap lowered so its bomb stays small."""
    monkeypatch.setattr(restricted_pickle, "MAX_PICKLE_OPS", 1000)
    paths = {}
    for name, (data, _) in CASES.items():
        paths[name] = tmp_path / f"{name}.pth"
        paths[name].write_bytes(data)
    return paths


def test_each_hostile_file_is_refused_in_one_line_naming_it(corpus):
    def body():
        for name, path in corpus.items():
            with pytest.raises(CheckpointError) as caught:
                load_torch_file(path)
            message = str(caught.value)
            assert message.startswith(f"{path}: "), (name, message)
            assert re.search(CASES[name][1], message), (name, message)
            assert "\n" not in message, name
    # 32 GiB of stride-0 tensor, 2**40 floats, a 2 GiB object array: none may be attempted.
    run_limited(body, extra_bytes=256 << 20)


@pytest.mark.parametrize("name", sorted(CASES))
def test_panns_cli_exits_2_with_one_line(corpus, tmp_path, capsys, name):
    out = tmp_path / "out.keras"
    assert panns.main([str(corpus[name]), "--arch", "cnn10", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"{panns.PROG}: error: {corpus[name]}: "), err
    assert not out.exists()


def test_debug_shows_the_traceback(corpus, tmp_path):
    with pytest.raises(CheckpointError, match="stride-0"):
        panns.main([str(corpus["stride0_32GiB"]), "--arch", "cnn10", "--out",
                    str(tmp_path / "o.keras"), "--debug"])


def test_the_memory_cap_refuses_larger_totals(tmp_path, capsys):
    big = np.zeros(300_000, np.float32)  # 1.2 MB storage, 1.2 MB tensor
    path = tmp_path / "big.pth"
    path.write_bytes(zip_file(state(w=tensor("0", (300_000,), (1,), numel=300_000)),
                              [("0", big.tobytes())]))
    assert load_torch_file(path, max_bytes=3 << 20)["model"]["w"].shape == (300_000,)
    with pytest.raises(CheckpointError, match="past its cap of 2 MiB"):
        load_torch_file(path, max_bytes=2 << 20)
    assert panns.main([str(path), "--arch", "cnn10", "--out", str(tmp_path / "o.keras"),
                       "--max-gb", "0.001"]) == 2
    assert "cap of 1.02 MiB" in capsys.readouterr().err


def test_hand_made_valid_files_load(tmp_path):
    """The corpus' builders write what torch writes: both layouts load, big-endian too."""
    (tmp_path / "z.pth").write_bytes(valid_zip())
    (tmp_path / "l.pth").write_bytes(valid_legacy())
    (tmp_path / "b.pth").write_bytes(zip_file(state(w=tensor("0", (6,), (1,), numel=6)),
                                              [("0", FLOATS.astype(">f4").tobytes())],
                                              byteorder=b"big"))
    np.testing.assert_array_equal(load_torch_file(tmp_path / "z.pth")["model"]["w"],
                                  FLOATS.reshape(2, 3))
    np.testing.assert_array_equal(load_torch_file(tmp_path / "l.pth")["model"]["w"],
                                  FLOATS.reshape(2, 3).T)
    np.testing.assert_array_equal(load_torch_file(tmp_path / "b.pth")["model"]["w"], FLOATS)


def test_shared_storage_is_read_once_and_tensors_do_not_alias(tmp_path):
    path = tmp_path / "shared.pth"
    path.write_bytes(zip_file(state(a=tensor("0", (3,), (1,), numel=6),
                                    b=tensor("0", (3,), (1,), offset=3, numel=6)),
                              [("0", FLOATS.tobytes())]))
    model = load_torch_file(path)["model"]
    np.testing.assert_array_equal(model["a"], FLOATS[:3])
    np.testing.assert_array_equal(model["b"], FLOATS[3:])
    model["a"][0] = 9
    assert model["b"][0] == 3 and model["a"].flags.writeable


def test_a_missing_path_is_an_os_error_and_a_cli_line(tmp_path, capsys):
    with pytest.raises(FileNotFoundError):
        load_torch_file(tmp_path / "nope.pth")
    for target in (tmp_path / "nope.pth", tmp_path):
        assert panns.main([str(target), "--arch", "cnn10", "--out", "o.keras"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{panns.PROG}: error: {target}: ") and err.count("\n") == 1, err


def test_non_string_state_dict_keys_are_refused(tmp_path):
    path = tmp_path / "intkeys.pth"
    body = b"\x80\x02}(K\x01" + tensor("0", (1,), (1,)) + b"u."
    path.write_bytes(zip_file(body, [("0", b"\0" * 4)]))
    with pytest.raises(CheckpointError, match="state dict key 1 is not a name"):
        panns.load_panns_checkpoint(path)
