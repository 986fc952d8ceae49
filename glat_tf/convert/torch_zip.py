"""Reads PyTorch checkpoints (zip or legacy format) without torch, in bounded memory.

The file is untrusted: every global its pickle names is on an allow-list
(restricted_pickle.py), every size it claims is checked against the bytes it holds
and a budget before anything is allocated, and whatever is wrong with it ends in one
CheckpointError naming the file and the problem.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
import zlib

from glat_tf.convert.restricted_pickle import (DEFAULT_MAX_BYTES, Budget, CheckpointError,
                                               RestrictedUnpickler, Storage, UnsafeCheckpointError,
                                               describe, size_text)

__all__ = ["CheckpointError", "DEFAULT_MAX_BYTES", "UnsafeCheckpointError", "load_torch_file"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch/serialization.py MAGIC_NUMBER
LEGACY_PROTOCOL = 1001
# What a malformed file makes the zip, struct and pickle machinery raise; MemoryError is not
# among them: the checks above must keep every allocation bounded.
_MALFORMED = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError,
              IndexError, OverflowError, RuntimeError, NotImplementedError, struct.error,
              zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError)


def _refuse_storages(key, _type):
    raise CheckpointError("this pickle may not reference tensor storages")


def _unpickle(data: bytes, budget, storages=_refuse_storages, start=0):
    """(object, end offset) of the pickle at data[start:]."""
    stream = io.BytesIO(data)
    stream.seek(start)
    obj = RestrictedUnpickler(stream, storages, budget).load()
    return obj, stream.tell()


def _read_member(archive, info, budget, limit=None) -> bytes:
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CheckpointError(f"archive member {info.filename!r} uses compression method "
                              f"{info.compress_type}; torch.save stores members uncompressed")
    if limit is not None and info.file_size > limit:
        raise CheckpointError(f"archive member {info.filename!r} has {info.file_size} bytes, "
                              f"expected at most {limit}")
    budget.charge(info.file_size, f"archive member {info.filename!r}")
    raw = archive.read(info)
    if len(raw) != info.file_size:
        raise CheckpointError(f"archive member {info.filename!r} is truncated")
    return raw


def _load_zip(file, budget):
    with zipfile.ZipFile(file) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        pickles = [n for n in infos if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(f"expected one data.pkl in the zip, found {len(pickles)}")
        prefix = pickles[0][:-len("data.pkl")]
        order = "little"
        if prefix + "byteorder" in infos:
            order = _read_member(archive, infos[prefix + "byteorder"], budget, limit=16)
            order = order.decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise CheckpointError(f"byteorder says {describe(order)}, not little or big")
        storages = {}

        def storage(key, storage_type):
            if key not in storages:
                info = infos.get(f"{prefix}data/{key}")
                if info is None:
                    raise CheckpointError(f"tensor storage {key!r} is not in the archive")
                count, rest = divmod(info.file_size, storage_type.dtype.itemsize)
                if rest:
                    raise CheckpointError(f"storage {key!r} of {info.file_size} bytes is not "
                                          f"whole {storage_type.dtype} items")
                storages[key] = Storage(key, storage_type, count,
                                        lambda: _read_member(archive, info, budget), order)
            if storages[key].type.name != storage_type.name:
                raise CheckpointError(f"storage {key!r} is read as two different types")
            return storages[key]

        return _unpickle(_read_member(archive, infos[pickles[0]], budget), budget, storage)[0]


def _load_legacy(file, budget):
    # The whole file in memory (charged): storages are then views of it, never copies.
    size = os.fstat(file.fileno()).st_size
    budget.charge(size, "the legacy checkpoint file")
    data = file.read()
    try:
        magic, end = _unpickle(data, budget)
    except UnsafeCheckpointError:
        raise
    except _MALFORMED:
        magic = None
    if magic != LEGACY_MAGIC:
        raise CheckpointError("neither a zip archive nor a legacy PyTorch checkpoint")
    protocol, end = _unpickle(data, budget, start=end)
    if protocol != LEGACY_PROTOCOL:
        raise CheckpointError(f"legacy protocol {describe(protocol)}; this reader knows "
                              f"{LEGACY_PROTOCOL}")
    sys_info, start = _unpickle(data, budget, start=end)
    if not isinstance(sys_info, dict):
        raise CheckpointError(f"legacy header's sys_info is {describe(sys_info)}, not a dict")
    if not sys_info.get("little_endian", True):
        raise CheckpointError("big-endian legacy checkpoints are not supported")
    # Storages follow the main pickle: skim it once for their types, find them, parse again.
    types = {}

    def note_type(key, storage_type):
        if types.setdefault(key, storage_type).name != storage_type.name:
            raise CheckpointError(f"storage {key!r} is read as two different types")

    _, end = _unpickle(data, budget, note_type, start)
    keys, end = _unpickle(data, budget, start=end)
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise CheckpointError(f"legacy storage list is {describe(keys)}, not a list of keys")
    storages = {}
    for key in keys:
        if key not in types or key in storages:
            raise CheckpointError(f"storage {key!r} is listed twice or used by no tensor")
        if end + 8 > size:
            raise CheckpointError(f"the file ends inside storage {key!r}'s header")
        (count,), itemsize = struct.unpack_from("<q", data, end), types[key].dtype.itemsize
        if not 0 <= count * itemsize <= size - end - 8:
            raise CheckpointError(f"storage {key!r} claims {count} {types[key].dtype} items "
                                  f"({size_text(max(count, 0) * itemsize)}), but the file holds "
                                  f"only {size - end - 8} bytes after its header")
        begin, end = end + 8, end + 8 + count * itemsize
        storages[key] = Storage(key, types[key], count,
                                lambda begin=begin, end=end: memoryview(data)[begin:end])

    def storage(key, _type):
        if key not in storages:
            raise CheckpointError(f"tensor storage {key!r} is not in the file")
        return storages[key]

    return _unpickle(data, budget, storage, start)[0]


def load_torch_file(path, max_bytes: int = DEFAULT_MAX_BYTES) -> object:
    """The object a `torch.save` wrote, with every tensor as a NumPy array (bfloat16 as float32).

    Only the globals a state dict (and PANNs' sampler state) needs are admitted: anything
    else raises UnsafeCheckpointError before it is called. A load allocates at most
    `max_bytes` (storages plus the tensors copied from them: about twice the file); a file
    that would need more, or that is malformed in any way, raises CheckpointError (a
    ValueError) naming the file and the problem. A path that cannot be opened raises OSError.
    """
    path = os.fspath(path)
    budget = Budget(max_bytes)
    with open(path, "rb") as file:
        try:
            if zipfile.is_zipfile(file):
                return _load_zip(file, budget)
            file.seek(0)
            if file.read(2) == b"PK":
                raise CheckpointError("a zip archive without its central directory (truncated?)")
            file.seek(0)
            return _load_legacy(file, budget)
        except CheckpointError as error:
            raise type(error)(_one_line(f"{path}: {error}")) from error
        except _MALFORMED as error:
            detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            raise CheckpointError(_one_line(f"{path}: not a readable PyTorch checkpoint "
                                            f"({detail})")) from error


def _one_line(text: str) -> str:
    return " ".join(text.split())
