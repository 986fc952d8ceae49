"""Fuzzing the CSV readers (segments, path/labels lists, class labels): parse or raise CsvError."""

import tempfile
from pathlib import Path

import pytest
from hypothesis import strategies as st

from tests.fuzzing import fuzz, mutated, raises_only
from glat_tf.data.labels import CsvError, LabelMap, read_list_csv, read_segments_csv

SEGMENTS = ('# Segments csv created Sun Mar  5 10:54:31 2017\n'
            '# num_ytids=2, num_segs=2, num_unique_labels=2, num_positive_labels=3\n'
            '# YTID, start_seconds, end_seconds, positive_labels\n'
            '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"\n'
            '--ZhevVpy1s, 50.000, 60.000, "/m/012xff"\n').encode()
LIST = 'path,labels\na.wav,Speech\n"b c.flac","Music;Speech"\nd.mp3,"Male speech, man speaking"\n'
LABELS = 'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/04rlf,"Music"\n2,/m/x,"A, b"\n'
SEEDS = [SEGMENTS, LIST.encode(), LABELS.encode(), "é,ü\r\n\"\"\"\n".encode()]
READERS = [read_segments_csv, read_list_csv, LabelMap.from_csv]
# CSV's own alphabet, weighted towards what breaks parsers: quotes, separators, line ends.
CSVISH = st.text(st.sampled_from(list(',"#;\n\r \t/m0129abc') + ["é", "\x00", "\ufeff"]),
                 max_size=300)


def _read_all(data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.csv"
        path.write_bytes(data)
        for reader in READERS:
            raises_only(CsvError, lambda: reader(path))


def test_random_bytes():
    fuzz(_read_all, st.binary(max_size=600))


def test_csv_like_text():
    fuzz(lambda text: _read_all(text.encode("utf-8")), CSVISH)


def test_mutated_valid_files():
    fuzz(_read_all, mutated(SEEDS))


@pytest.mark.parametrize("reader, data, message", [
    (LabelMap.from_csv, b"index,mid,display_name\n0,/m/a,A\n\xff\xfe,x\n",
     r"fuzz.csv: not UTF-8 text \(invalid start byte\)"),
    (LabelMap.from_csv, b"index,mid,display_name\n0,/m/a,A\n1,/m/a,B\n", r"fuzz.csv: duplicate MIDs"),
    (LabelMap.from_csv, b"index,mid,display_name\n\xc2\xb2,/m/a,A\n",
     r"fuzz.csv:2: expected '0,<mid>,<name>'"),
    (read_segments_csv, b"# x\nabc, 1.0, \"/m/a\"\n", r"fuzz.csv:2: expected 4 columns"),
    (read_list_csv, b"a," + b'"' + b"x" * 200_000 + b'"\n', r"fuzz.csv:1: field larger than"),
], ids=["not_utf8", "duplicate_mids", "unicode_digit_index", "three_columns", "huge_field"])
def test_malformed_files_name_file_and_line(tmp_path, reader, data, message):
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    with pytest.raises(CsvError, match=message):
        reader(path)
