"""Hand-made hostile PyTorch checkpoints (zip and legacy), built opcode by opcode without torch.

CASES maps a name to (the file's bytes, a regex its one-line refusal must match). The
fuzz suite starts its mutations from these and from `valid_zip()` / `valid_legacy()`.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import struct
import zipfile

import numpy as np

MAGIC, PROTOCOL = 0x1950A86A20F9469CFC6C, 1001


def lit(obj) -> bytes:
    """`obj` as protocol-2 pickle opcodes, without the PROTO header and STOP."""
    return pickletools.optimize(pickle.dumps(obj, protocol=2))[2:-1]


def glob(module, name) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def tensor(key, size, stride, offset=0, storage="FloatStorage", numel=1, view=None) -> bytes:
    """_rebuild_tensor_v2(persistent storage `key`, offset, size, stride, False, {})."""
    pid = (b"(" + lit("storage") + glob("torch", storage) + lit(key) + lit("cpu") + lit(numel)
           + (lit(view) if view is not None else b"") + b"tQ")
    return (glob("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + lit(offset)
            + lit(tuple(size)) + lit(tuple(stride)) + b"\x89}tR")


def state(**tensors) -> bytes:
    """A pickle of {"model": {name: tensor opcodes}}."""
    body = b"".join(lit(name) + value for name, value in tensors.items())
    return b"\x80\x02}" + lit("model") + b"}(" + body + b"us."


def zip_file(payload: bytes, storages=(), byteorder=b"little", extra=(),
             method=zipfile.ZIP_STORED, prefix="archive/") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(prefix + "data.pkl", payload, compress_type=method)
        archive.writestr(prefix + "byteorder", byteorder)
        for key, raw in storages:
            archive.writestr(f"{prefix}data/{key}", raw)
        for name, raw, method in extra:
            archive.writestr(zipfile.ZipInfo(prefix + name), raw, compress_type=method)
    return out.getvalue()


def legacy_file(main: bytes, storages=(), sys_info=None, protocol=PROTOCOL) -> bytes:
    """torch's pre-1.6 layout: magic, protocol, sys_info, main pickle, key list, storages."""
    info = {"protocol_version": 1001, "little_endian": True} if sys_info is None else sys_info
    head = b"".join(pickle.dumps(x, protocol=2) for x in (MAGIC, protocol, info))
    keys = pickle.dumps([key for key, _, _ in storages], protocol=2)
    body = b"".join(struct.pack("<q", count) + raw for _, count, raw in storages)
    return head + main + keys + body


FLOATS = np.arange(6, dtype=np.float32)


def valid_zip() -> bytes:
    return zip_file(state(w=tensor("0", (2, 3), (3, 1), numel=6)), [("0", FLOATS.tobytes())])


def valid_legacy() -> bytes:
    return legacy_file(state(w=tensor("0", (3, 2), (1, 3), numel=6)), [("0", 6, FLOATS.tobytes())])


def _object_array_bomb() -> bytes:
    # numpy's own pickle of an object array, claiming 2**28 elements: __setstate__ would
    # allocate 2 GiB before noticing the list holds one.
    array = (glob("numpy.core.multiarray", "_reconstruct") + b"(" + glob("numpy", "ndarray")
             + lit((0,)) + lit(b"b") + b"tR")
    dtype = glob("numpy", "dtype") + b"(" + lit("O8") + b"\x89\x88tR"
    return b"\x80\x02" + array + b"(" + lit(1) + lit((2**28,)) + dtype + b"\x89" + lit([1]) + b"tb."


def _dtype_flag_forgery() -> bytes:
    # A float64 dtype whose BUILD state claims the object flags (63).
    dtype = glob("numpy", "dtype") + b"(" + lit("f8") + b"\x89\x88tR"
    return b"\x80\x02" + dtype + lit((3, "<", None, None, None, -1, -1, 63)) + b"b."


def _build_on_a_function() -> bytes:
    # BUILD on an allowed callable would let a pickle rewrite it for later loads.
    return b"\x80\x02" + glob("torch._utils", "_rebuild_parameter") + lit({"__defaults__": (1,)}) + b"b."


def _opcode_bomb(ops=5000) -> bytes:
    return b"\x80\x02]" + b"]a" * ops + b"."


def _truncated_zip() -> bytes:
    whole = valid_zip()
    return whole[:len(whole) // 2]


CASES = {
    "stride0_32GiB": (zip_file(state(w=tensor("0", (131072, 65536), (0, 0))),
                               [("0", b"\0" * 4)]), "stride-0"),
    "stride0_268MB": (zip_file(state(w=tensor("0", (8192, 8192), (0, 0))),
                               [("0", b"\0" * 4)]), "stride-0"),
    "overlapping_strides": (zip_file(state(w=tensor("0", (4096, 4096), (1, 1), numel=8191)),
                                     [("0", b"\0" * 4 * 8191)]), "larger than its 8191-element"),
    "past_the_storage": (zip_file(state(w=tensor("0", (100,), (1,))), [("0", b"\0" * 8)]),
                         "element 99 of a 2-element storage"),
    "legacy_2e40_floats": (legacy_file(state(w=tensor("0", (4,), (1,), numel=2**40)),
                                       [("0", 2**40, b"\0" * 16)]), "claims 1099511627776"),
    "path_traversal_key": (zip_file(state(w=tensor("../../../../etc/hostname", (1,), (1,)))),
                           "not a plain name"),
    "storage_not_in_archive": (zip_file(state(w=tensor("7", (1,), (1,))), [("0", b"\0" * 4)]),
                               "storage '7' is not in the archive"),
    "legacy_sys_info_list": (legacy_file(state(), sys_info=[1, 2]), "sys_info is a list"),
    "legacy_protocol_1000": (legacy_file(state(), protocol=1000), "legacy protocol 1000"),
    "pickle_protocol_6": (zip_file(b"\x80\x06N."), "unsupported pickle protocol: 6"),
    "truncated_zip": (_truncated_zip(), "zip archive without its central directory"),
    "legacy_truncated_storage": (legacy_file(state(w=tensor("0", (4,), (1,), numel=4)),
                                             [("0", 4, b"\0" * 8)]), "claims 4 float32 items"),
    "legacy_view_outside": (legacy_file(state(w=tensor("0", (2,), (1,), numel=4,
                                                       view=("0", 3, 2))),
                                        [("0", 4, b"\0" * 16)]), "lies outside its 4 elements"),
    "os_system": (b"\x80\x02" + glob("os", "system") + b"(" + lit("true") + b"tR.",
                  "asks for 'os.system'"),
    "object_array_bomb": (zip_file(_object_array_bomb()), "refused a NumPy dtype '|O'"),
    "dtype_flag_forgery": (zip_file(_dtype_flag_forgery()), "dtype state"),
    "build_on_a_function": (zip_file(_build_on_a_function()), "refused to BUILD"),
    "bzip2_pickle": (zip_file(state(), method=zipfile.ZIP_BZIP2), "compression method 12"),
    "opcode_bomb": (zip_file(_opcode_bomb()), "more than 1000 opcodes"),  # cap set to 1000
    "not_a_checkpoint": (b"ID3\x04\x00" + bytes(range(256)) * 4, "neither a zip archive nor"),
    "empty_file": (b"", "neither a zip archive nor"),
    "bad_byteorder": (zip_file(state(), byteorder=b"middle"), "byteorder says 'middle'"),
    "storage_not_whole_items": (zip_file(state(w=tensor("0", (1,), (1,))), [("0", b"\0" * 5)]),
                                "not whole float32 items"),
    "two_pickles": (zip_file(b"\x80\x02N.", extra=[("x/data.pkl", b"N.", zipfile.ZIP_STORED)]),
                    "expected one data.pkl"),
}
