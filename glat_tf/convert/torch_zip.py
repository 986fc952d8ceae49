"""Reads PyTorch checkpoints (zip or legacy format) without torch, via an allow-list unpickler."""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

try:  # NumPy 2 moved the pickling helpers; checkpoints name either module.
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - NumPy 1
    from numpy.core import multiarray as _multiarray

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch/serialization.py MAGIC_NUMBER
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The pickle asked for something a state dict never needs; nothing of it was executed."""


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage, storage_offset, size, stride, *_unused):
    """A NumPy copy of a strided view of `storage`, bounds-checked (the file is untrusted)."""
    if storage is None:  # the skimming pass over a legacy file
        return None
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or min(size + stride + (storage_offset,), default=0) < 0:
        raise pickle.UnpicklingError(f"bad tensor layout size={size} stride={stride}")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise pickle.UnpicklingError(f"tensor reads element {last} of a {storage.size}-element "
                                     "storage")
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], size,
                                           [s * storage.itemsize for s in stride])
    return np.array(view)


def _rebuild_parameter(data, *_unused):
    return data


def _latin1_encode(text, encoding="latin1"):
    # Protocol-2 pickles spell bytes as _codecs.encode(str, "latin1"); no other codec is admitted.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafeCheckpointError(f"refused _codecs.encode with encoding={encoding!r}")
    return text.encode("latin1")


def _reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise UnsafeCheckpointError("refused an ndarray subclass")
    return _multiarray._reconstruct(np.ndarray, shape, dtype)


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    ("_codecs", "encode"): _latin1_encode,
    # PANNs checkpoints also hold the sampler's state: plain NumPy arrays and scalars.
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
}


class _Unpickler(pickle.Unpickler):
    """Admits only `_ALLOWED` globals; storages come from `storages(key, storage_type)`."""

    def __init__(self, file, storages):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise UnsafeCheckpointError(f"checkpoint asks for {module}.{name}, which a state dict "
                                    "never needs: refused, nothing was executed")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise UnsafeCheckpointError(f"unknown persistent id {pid!r:.80}")
        storage = self._storages(str(pid[2]), pid[1])
        view = pid[5] if len(pid) > 5 else None  # legacy: (view_key, offset, size)
        if view is not None and storage is not None:
            storage = storage[int(view[1]):int(view[1]) + int(view[2])]
        return storage


def _storage_array(raw: bytes, storage_type: _StorageType, order: str) -> np.ndarray:
    dtype = storage_type.dtype.newbyteorder("<" if order == "little" else ">")
    if len(raw) % dtype.itemsize:
        raise pickle.UnpicklingError(f"storage of {len(raw)} bytes is not whole {dtype} items")
    array = np.frombuffer(raw, dtype).astype(storage_type.dtype)
    if storage_type.name == "BFloat16Storage":  # the upper half of a float32
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _restricted_load(data: bytes | io.BufferedIOBase, storages=None):
    def refuse(key, _type):
        raise UnsafeCheckpointError("this pickle may not reference tensor storages")
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    return _Unpickler(stream, storages or refuse).load()


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"{path}: expected one data.pkl in the zip, found {pickles}")
        prefix = pickles[0][:-len("data.pkl")]
        names = set(archive.namelist())
        order = "little"
        if prefix + "byteorder" in names:
            order = archive.read(prefix + "byteorder").decode().strip()

        def storage(key, storage_type):
            return _storage_array(archive.read(f"{prefix}data/{key}"), storage_type, order)

        return _restricted_load(archive.read(pickles[0]), storage)


def _load_legacy(path):
    with open(path, "rb") as f:
        if _restricted_load(f) != LEGACY_MAGIC:
            raise ValueError(f"{path} is neither a zip nor a legacy PyTorch checkpoint")
        if _restricted_load(f) != LEGACY_PROTOCOL:
            raise ValueError(f"{path}: unsupported legacy protocol")
        if not _restricted_load(f).get("little_endian", True):
            raise ValueError(f"{path}: big-endian legacy checkpoints are not supported")
        # Storages follow the main pickle: parse it once to skip it, read them, parse again.
        start = f.tell()
        types = {}
        _restricted_load(f, lambda key, storage_type: types.setdefault(key, storage_type) and None)
        data = {}
        for key in _restricted_load(f):
            (count,) = struct.unpack("<q", f.read(8))
            storage_type = types[str(key)]
            raw = f.read(count * storage_type.dtype.itemsize)
            data[str(key)] = _storage_array(raw, storage_type, "little")
        f.seek(start)
        return _restricted_load(f, lambda key, _type: data[key])


def load_torch_file(path) -> object:
    """The object a `torch.save` wrote, with every tensor as a NumPy array (bfloat16 as float32).

    Only the globals a state dict (and PANNs' sampler state) needs are admitted: anything
    else raises UnsafeCheckpointError before it is called.
    """
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    return _load_legacy(path)
