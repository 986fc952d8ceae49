"""Paths that are local files or tf.io.gfile URLs (gs://, s3:// with tensorflow-io, hdfs://, ram://).

Local paths (and file:// URLs) use the os module, so ingest workers reading local audio never
import TensorFlow; any other URL goes through tf.io.gfile, the one file layer that both ingest
and TFRecordDataset speak, so shards written anywhere are readable by training.
"""

from __future__ import annotations

import os
import posixpath
import shutil

FILE_SCHEME = "file://"


def is_url(path: str) -> bool:
    return "://" in str(path) and not str(path).startswith(FILE_SCHEME)


def local(path) -> str:
    """file:///x -> /x; other paths unchanged (as str)."""
    path = os.fspath(path)
    return path[len(FILE_SCHEME):] if path.startswith(FILE_SCHEME) else path


def _gfile():
    import tensorflow as tf
    return tf.io.gfile


def join(base, *parts) -> str:
    base = local(base)
    return posixpath.join(base, *parts) if is_url(base) else os.path.join(base, *parts)


def basename(path) -> str:
    return posixpath.basename(local(path).rstrip("/"))


def exists(path) -> bool:
    path = local(path)
    return _gfile().exists(path) if is_url(path) else os.path.exists(path)


def isdir(path) -> bool:
    path = local(path)
    return _gfile().isdir(path) if is_url(path) else os.path.isdir(path)


def listdir(path) -> list[str]:
    path = local(path)
    if is_url(path):
        return [name.rstrip("/") for name in _gfile().listdir(path)]
    return os.listdir(path)


def glob(pattern) -> list[str]:
    pattern = local(pattern)
    if is_url(pattern):
        return sorted(_gfile().glob(pattern))
    import glob as globmod
    return sorted(globmod.glob(pattern))


def makedirs(path) -> None:
    path = local(path)
    _gfile().makedirs(path) if is_url(path) else os.makedirs(path, exist_ok=True)


def stamp(path) -> tuple[int, int]:
    """(bytes, mtime_ns): what identifies a version of a file cheaply."""
    path = local(path)
    if is_url(path):
        info = _gfile().stat(path)
        return int(info.length), int(info.mtime_nsec)
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def size(path) -> int:
    return stamp(path)[0]


def open_file(path, mode: str = "rb"):
    path = local(path)
    return _gfile().GFile(path, mode) if is_url(path) else open(path, mode)


def read_bytes(path) -> bytes:
    with open_file(path, "rb") as f:
        return f.read()


def read_text(path) -> str:
    return read_bytes(path).decode("utf-8")


def remove(path) -> None:
    path = local(path)
    _gfile().remove(path) if is_url(path) else os.remove(path)


def rename(src, dst) -> None:
    """Replace dst by src (atomic on local disks; a copy and delete on most object stores)."""
    src, dst = local(src), local(dst)
    _gfile().rename(src, dst, overwrite=True) if is_url(src) else os.replace(src, dst)


def copy(src, dst) -> None:
    src, dst = local(src), local(dst)
    if is_url(src) or is_url(dst):
        _gfile().copy(src, dst, overwrite=True)
    else:
        shutil.copyfile(src, dst)


def write_atomic(path, data: str | bytes) -> None:
    """Write under a temporary name, then rename: readers see the old or the new file whole."""
    tmp = f"{local(path)}.tmp-{os.getpid()}"
    with open_file(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    rename(tmp, path)
