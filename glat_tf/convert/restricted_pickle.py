"""The unpickler for untrusted PyTorch state dicts: an allow-list of globals, and every size the
file claims checked against the bytes it really holds and a budget before anything is allocated."""

from __future__ import annotations

import collections
import math
import pickle

import numpy as np

try:  # NumPy 2 moved the pickling helpers; checkpoints name either module.
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - NumPy 1
    from numpy.core import multiarray as _multiarray

# Far above any PANNs checkpoint (Cnn14: 327 MB, which a load holds about twice: storages plus
# the tensors copied out of them), far below what takes a host down.
DEFAULT_MAX_BYTES = 4 << 30
# A state dict's pickle runs ~30 opcodes per tensor; each opcode may make one small object.
MAX_PICKLE_OPS = 2_000_000

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(ValueError, pickle.UnpicklingError):
    """A checkpoint this reader refuses; the message names the file and the problem."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle asked for something a state dict never needs; nothing of it was executed."""


def describe(value, limit=60) -> str:
    """A short one-line picture of an untrusted value (no repr of a deep or huge object)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an int of {value.bit_length()} bits"
    if isinstance(value, (str, bytes, int, float)) or value is None:
        text = repr(value)
        return text if len(text) <= limit else text[:limit - 3] + "..."
    return f"a {type(value).__name__}"


def size_text(nbytes: int) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes} bytes"


class Budget:
    """The bytes one load may allocate, charged before each allocation."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes, self.used = int(max_bytes), 0

    def charge(self, nbytes: int, what: str):
        if self.used + nbytes > self.max_bytes:
            raise CheckpointError(f"{what} ({size_text(nbytes)}) would take the load past its cap "
                                  f"of {size_text(self.max_bytes)} (raise max_bytes, --max-gb)")
        self.used += nbytes


class StorageType:
    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])


class Storage:
    """A tensor storage whose element count is known before a byte of it is read.

    `read()` gives the raw little- or big-endian bytes (called at most once); `start` is
    where a legacy view begins inside its root storage.
    """

    def __init__(self, key, storage_type, count, read, order="little"):
        self.key, self.type, self.count = key, storage_type, count
        self._read, self._order, self._array, self._root, self.start = read, order, None, self, 0

    def view(self, start, count):
        if not (_is_int(start) and _is_int(count) and 0 <= start and 0 <= count
                and start + count <= self.count):
            raise CheckpointError(f"view [{describe(start)}, +{describe(count)}) of storage "
                                  f"{self.key!r} lies outside its {self.count} elements")
        view = Storage(self.key, self.type, count, None)
        view._root, view.start = self._root, self.start + start
        return view

    def array(self, budget) -> np.ndarray:
        """The root storage as a NumPy array (bfloat16 widened to float32), decoded once."""
        root = self._root
        if root._array is None:
            dtype = root.type.dtype.newbyteorder("<" if root._order == "little" else ">")
            raw = root._read()
            if len(raw) != root.count * dtype.itemsize:
                raise CheckpointError(f"storage {root.key!r} holds {len(raw)} bytes, not the "
                                      f"{root.count * dtype.itemsize} its header promised")
            array = np.frombuffer(raw, dtype)
            if root.type.name == "BFloat16Storage":  # the upper half of a float32
                budget.charge(4 * root.count, f"bfloat16 storage {root.key!r} as float32")
                array = (array.astype(np.uint32) << 16).view(np.float32)
            elif not dtype.isnative:
                budget.charge(array.nbytes, f"byte-swapped storage {root.key!r}")
                array = array.astype(dtype.newbyteorder("="))
            root._array = array
        return root._array


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _layout(values, what) -> tuple[int, ...]:
    if not (isinstance(values, tuple) and all(_is_int(v) and v >= 0 for v in values)):
        raise CheckpointError(f"tensor {what} is {describe(values)}, not a tuple of sizes >= 0")
    return values


def _check_dtype(dtype) -> np.dtype:
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise UnsafeCheckpointError(f"refused a NumPy dtype {dtype.str!r} with objects, fields "
                                    "or sub-arrays: state dicts hold plain numbers")
    return dtype


class _Dispatch(dict):
    def __missing__(self, opcode):
        raise CheckpointError(f"invalid pickle opcode {bytes([opcode])!r}")


def _counted(handler):
    def run(unpickler):
        unpickler.ops_left -= 1
        if unpickler.ops_left < 0:
            raise CheckpointError(f"pickle runs more than {MAX_PICKLE_OPS} opcodes, far more "
                                  "than a state dict needs")
        handler(unpickler)
    return run


_NDARRAY = object()  # stands for numpy.ndarray, which a pickle may name but never call
_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch", "Size"): tuple,
    ("torch._utils", "_rebuild_tensor"): "rebuild_tensor",
    ("torch._utils", "_rebuild_tensor_v2"): "rebuild_tensor",
    ("torch._utils", "_rebuild_parameter"): "rebuild_parameter",
    ("_codecs", "encode"): "latin1_encode",
    # PANNs checkpoints also hold the sampler's state: plain NumPy arrays and scalars.
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): "make_dtype",
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy.core.multiarray", "scalar"): "scalar",
    ("numpy._core.multiarray", "scalar"): "scalar",
}


class RestrictedUnpickler(pickle._Unpickler):
    """pickle's own Python unpickler, restricted: `_GLOBALS` only, BUILD only on the objects
    a state dict builds (checked first), a bounded number of opcodes, storages from
    `storages(key, StorageType) -> Storage | None`.

    The C unpickler cannot be restricted this far: its BUILD hands any state to NumPy's
    __setstate__, which allocates an object array of whatever shape the file claims.
    """

    dispatch = _Dispatch({op: _counted(handler) for op, handler in
                          pickle._Unpickler.dispatch.items()})

    def __init__(self, file, storages, budget: Budget):
        super().__init__(file)
        self._storages, self._budget, self.ops_left = storages, budget, MAX_PICKLE_OPS

    def find_class(self, module, name):
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        target = _GLOBALS.get((module, name))
        if target is None:
            raise UnsafeCheckpointError(f"checkpoint asks for {describe(f'{module}.{name}')}, "
                                        "which a state dict never needs: refused, nothing was "
                                        "executed")
        # Bound methods: fresh per load, and nothing a pickle does can change them.
        return getattr(self, target) if isinstance(target, str) else target

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], StorageType)):
            raise UnsafeCheckpointError(f"persistent id {describe(pid)} is not a tensor storage")
        key = pid[2]
        if not (isinstance(key, str) and 0 < len(key) <= 64 and key.isascii() and key.isalnum()):
            raise CheckpointError(f"storage key {describe(key)} is not a plain name (torch "
                                  "writes numbers): refused")
        storage = self._storages(key, pid[1])
        if len(pid) == 6 and pid[5] is not None and storage is not None:
            view = pid[5]  # legacy: (view_key, offset, size), in elements
            if not (isinstance(view, tuple) and len(view) == 3):
                raise CheckpointError(f"storage {key!r} has view metadata {describe(view)}")
            storage = storage.view(view[1], view[2])
        return storage

    def rebuild_tensor(self, storage, storage_offset, size, stride, *_unused):
        """A NumPy copy of a strided view of `storage`, every bound checked before allocating."""
        if storage is None:  # the skimming pass over a legacy file
            return None
        if not isinstance(storage, Storage):
            raise CheckpointError(f"a tensor's storage is {describe(storage)}")
        size, stride = _layout(size, "size"), _layout(stride, "stride")
        offset = storage_offset
        if not (_is_int(offset) and offset >= 0) or len(size) != len(stride):
            raise CheckpointError(f"bad tensor layout size={size} stride={stride} "
                                  f"offset={describe(offset)}")
        dtype, count = storage.type.dtype, math.prod(size)
        if count == 0:
            return np.zeros(size, dtype)
        if any(s == 0 and n > 1 for n, s in zip(size, stride)):
            raise CheckpointError(f"tensor of size {size} has stride {stride}: a stride-0 "
                                  "(expanded) tensor would repeat its storage, refused")
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.count:
            raise CheckpointError(f"tensor reads element {last} of a {storage.count}-element "
                                  f"storage ({storage.key!r})")
        if count > storage.count:
            raise CheckpointError(f"tensor of size {size} ({count} elements) is larger than its "
                                  f"{storage.count}-element storage {storage.key!r}")
        base = storage.array(self._budget)
        self._budget.charge(count * base.itemsize, f"tensor of size {size}")
        view = np.lib.stride_tricks.as_strided(base[storage.start + offset:], size,
                                               [s * base.itemsize for s in stride])
        return np.array(view)

    def rebuild_parameter(self, data, *_unused):
        return data

    def latin1_encode(self, text, encoding="latin1"):
        # Protocol-2 pickles spell bytes as _codecs.encode(str, "latin1"); no other codec.
        if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
            raise UnsafeCheckpointError(f"refused _codecs.encode with encoding="
                                        f"{describe(encoding)}")
        return text.encode("latin1")

    def make_dtype(self, *args):
        return _check_dtype(np.dtype(*args))

    def reconstruct(self, subtype, shape, typecode):
        # NumPy pickles always start an array empty, then BUILD gives it shape and bytes.
        if subtype is not _NDARRAY or shape != (0,):
            raise UnsafeCheckpointError("refused an ndarray subclass or a pre-shaped ndarray")
        return _multiarray._reconstruct(np.ndarray, (0,), typecode)

    def scalar(self, dtype, data):
        if not isinstance(dtype, np.dtype) or not isinstance(data, bytes):
            raise CheckpointError(f"numpy scalar of {describe(dtype)} from {describe(data)}")
        return _multiarray.scalar(_check_dtype(dtype), data)

    def load_build(self):
        state, target = self.stack[-1], self.stack[-2]
        if isinstance(target, np.ndarray):
            self._check_array_state(target, state)
        elif isinstance(target, np.dtype):
            _check_dtype_state(target, state)
        elif not (type(target) is collections.OrderedDict and isinstance(state, dict)):
            raise UnsafeCheckpointError(f"refused to BUILD {describe(target)} from "
                                        f"{describe(state)}")
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = _counted(load_build)

    def _check_array_state(self, array, state):
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], np.dtype)
                and isinstance(state[4], bytes)):
            raise CheckpointError(f"ndarray state {describe(state)} is not (version, shape, "
                                  "dtype, fortran, bytes)")
        shape, dtype, raw = _layout(state[1], "shape"), _check_dtype(state[2]), state[4]
        if len(raw) != math.prod(shape) * dtype.itemsize:
            raise CheckpointError(f"ndarray of shape {shape} {dtype} from {len(raw)} bytes")
        self._budget.charge(len(raw), f"ndarray of shape {shape}")


def _check_dtype_state(dtype, state):
    # (3, byteorder, subarray, names, fields, elsize, alignment, flags): only the byte order
    # may differ from what np.dtype(...) made; the flags must not claim Python objects.
    if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3
            and state[1] in ("<", ">", "|", "=") and state[2:5] == (None, None, None)
            and state[5] in (-1, dtype.itemsize) and state[6] in (-1, dtype.alignment)
            and state[7] == dtype.flags):
        raise UnsafeCheckpointError(f"refused a NumPy dtype state {describe(state)} that "
                                    f"changes {dtype.str!r} beyond its byte order")
