"""AudioSet's CSV formats: class_labels_indices.csv, segments CSVs, and the generic `path,labels` list."""

from __future__ import annotations

import csv
import dataclasses
import os
from importlib import resources

LABELS_HEADER = ("index", "mid", "display_name")
SEGMENTS_COLUMNS = "# YTID, start_seconds, end_seconds, positive_labels"
# AudioSet's own files carry this creation line; a fixed date keeps our output byte-identical.
SEGMENTS_CREATED = "# Segments csv created Sun Mar  5 10:54:31 2017"


class CsvError(ValueError):
    """A CSV that is not what it should be; the message names the file (and line, if known)."""


def _csv_rows(path, **options):
    """(record number from 1, row) of a UTF-8 CSV; bytes that are not UTF-8 text and csv's own
    errors (NUL bytes, a field past csv's size limit) become CsvError naming file and line."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, **options)
        try:
            yield from enumerate(reader, start=1)
        except UnicodeDecodeError as err:
            raise CsvError(f"{path}: not UTF-8 text ({err.reason})") from None
        except csv.Error as err:
            raise CsvError(f"{path}:{reader.line_num}: {err}") from None


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """Class index <-> MID <-> display name, as in AudioSet's class_labels_indices.csv.

    Example:
        labels = LabelMap.audioset()
        labels.index("/m/09x0r") == labels.index("Speech") == 0
    """

    mids: tuple[str, ...]
    names: tuple[str, ...]

    def __post_init__(self):
        if len(self.mids) != len(self.names):
            raise ValueError(f"{len(self.mids)} MIDs but {len(self.names)} display names")
        duplicates = sorted({m for m in self.mids if self.mids.count(m) > 1})
        if duplicates:
            raise ValueError(f"duplicate MIDs in label map: {duplicates[:5]}")
        by_key = {m: i for i, m in enumerate(self.mids)}
        folded: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            by_key.setdefault(name, i)
            folded.setdefault(name.casefold(), []).append(i)
        object.__setattr__(self, "_by_key", by_key)
        object.__setattr__(self, "_by_folded", folded)

    def __len__(self) -> int:
        return len(self.mids)

    def lookup(self, key: str) -> int | None:
        """Index of a MID or display name (exact, then case-insensitive if unique); None if unknown."""
        key = key.strip()
        if key in self._by_key:
            return self._by_key[key]
        hits = self._by_folded.get(key.casefold(), [])
        return hits[0] if len(hits) == 1 else None

    def index(self, key: str) -> int:
        found = self.lookup(key)
        if found is None:
            raise KeyError(f"unknown label {key!r} (neither a MID nor a display name)")
        return found

    def split_labels(self, field: str) -> tuple[list[int], list[str]]:
        """Label indices of a list field, and the pieces that matched nothing.

        Labels are separated by ';', or by ',' inside a quoted field; display names that
        themselves hold commas ("Male speech, man speaking") are matched greedily.
        """
        field = field.strip()
        if not field:
            return [], []
        if ";" in field:
            pieces = [p.strip() for p in field.split(";")]
            hits = [(p, self.lookup(p)) for p in pieces if p]
            return [i for _, i in hits if i is not None], [p for p, i in hits if i is None]
        pieces = [p.strip() for p in field.split(",")]
        found, unknown, start = [], [], 0
        while start < len(pieces):
            # Longest run of comma-separated pieces that names one label wins.
            for stop in range(len(pieces), start, -1):
                index = self.lookup(", ".join(pieces[start:stop]))
                if index is not None:
                    found.append(index)
                    start = stop
                    break
            else:
                if pieces[start]:
                    unknown.append(pieces[start])
                start += 1
        return found, unknown

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> "LabelMap":
        """Reads class_labels_indices.csv; a malformed file raises CsvError (a ValueError)."""
        rows = [row for _, row in _csv_rows(path)]
        if not rows or tuple(c.strip() for c in rows[0]) != LABELS_HEADER:
            raise CsvError(f"{path}: first line must be {','.join(LABELS_HEADER)}")
        mids, names = [], []
        for line, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            index = row[0].strip()
            if len(row) != 3 or not (index.isascii() and index.isdigit() and
                                     int(index) == len(mids)):
                raise CsvError(f"{path}:{line}: expected '{len(mids)},<mid>,<name>', got "
                               f"{_short(row)}")
            mids.append(row[1].strip())
            names.append(row[2].strip())
        try:
            return cls(tuple(mids), tuple(names))
        except ValueError as err:  # duplicate MIDs
            raise CsvError(f"{path}: {err}") from None

    @classmethod
    def audioset(cls) -> "LabelMap":
        """AudioSet's 527 classes, shipped with the package."""
        return cls.from_csv(audioset_labels_csv())

    def to_csv(self, path: str | os.PathLike) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            f.write(",".join(LABELS_HEADER) + "\n")
            for i, (mid, name) in enumerate(zip(self.mids, self.names)):
                f.write(f'{i},{mid},"{name}"\n')


def _short(row, limit=120) -> str:
    text = repr(row)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def audioset_labels_csv() -> str:
    return str(resources.files("glat_tf.data") / "audioset_class_labels_indices.csv")


def read_segments_csv(path: str | os.PathLike) -> list[tuple[str, list[str], int]]:
    """(YTID, [MID, ...], line number) per row of an AudioSet segments CSV ('#' lines skipped).

    A malformed file raises CsvError (a ValueError) naming file and line.
    """
    rows = []
    for line, row in _csv_rows(path, skipinitialspace=True):
        if not row or row[0].startswith("#"):
            continue
        if len(row) != 4:
            raise CsvError(f"{path}:{line}: expected 4 columns "
                           f"(YTID, start, end, \"labels\"), got {len(row)}: {_short(row)}")
        mids = [m.strip() for m in row[3].split(",") if m.strip()]
        rows.append((row[0].strip(), mids, line))
    return rows


def write_segments_csv(path: str | os.PathLike, rows, num_classes_total: int | None = None) -> None:
    """Write (YTID, start, end, [MID, ...]) rows with AudioSet's three '#' header lines."""
    rows = list(rows)
    used = {m for r in rows for m in r[3]}
    positives = sum(len(r[3]) for r in rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(SEGMENTS_CREATED + "\n")
        f.write(f"# num_ytids={len({r[0] for r in rows})}, num_segs={len(rows)}, "
                f"num_unique_labels={num_classes_total or len(used)}, "
                f"num_positive_labels={positives}\n")
        f.write(SEGMENTS_COLUMNS + "\n")
        for ytid, start, end, mids in rows:
            f.write(f'{ytid}, {start:.3f}, {end:.3f}, "{",".join(mids)}"\n')


def read_list_csv(path: str | os.PathLike) -> list[tuple[str, str, int]]:
    """(path, raw labels field, line number) per row of a generic `path,labels` CSV (CsvError
    if it is not UTF-8 CSV)."""
    rows = []
    for line, row in _csv_rows(path, skipinitialspace=True):
        if not row or row[0].startswith("#"):
            continue
        if line == 1 and [c.strip().lower() for c in row[:2]] == ["path", "labels"]:
            continue
        if len(row) < 2:
            rows.append((row[0].strip(), "", line))
        else:
            # An unquoted "a.wav,Speech,Music" arrives as 3 columns: labels are all but the path.
            rows.append((row[0].strip(), ",".join(row[1:]), line))
    return rows
