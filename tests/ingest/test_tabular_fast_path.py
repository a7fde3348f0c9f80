"""The fast CSV reader (numpy + pandas' C parser) gives exactly what the careful one
(csv module, one row at a time) gives: the same chunks, line numbers, bad rows and
errors, on random small files mixing every awkward case."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pophealth.ingest.tabular import (
    UnreadableFile,
    _read_delimited_careful,
    read_delimited,
)

HEADERS = [b"a,b,c", b"A\tB\tc", b"x|y|z", b"a", b'"a",b', b"a,a,A", b"", b" ,", b"id,d\xe9te"]
FIELDS = [b"", b"x", b"1", b" ", b"  pad ", b"\xc3\xa9", b'"', b'"q,r"', b'"q\nr"', b'a""b']
FIELDS += [b"\r", b"\xff", b"\x00", b"\x0b", b"\xc2\xa0", b"NaN", b"\xef\xbb\xbf", b"\t", b"|"]


def _outcome(reader, path: Path, chunk_rows: int, quoting, keep_bad: bool):
    """Everything a reader gives, in order, up to and including an error."""
    out: list = []
    on_bad = (lambda row: out.append(("bad", repr(row)))) if keep_bad else None
    try:
        for df, lines in reader(path, chunk_rows, on_bad=on_bad, quoting=quoting):
            assert list(lines.index) == list(range(len(df)))
            out.append(("chunk", repr(df.to_dict("split")), str(df.dtypes.tolist())))
            out.append(("lines", lines.dtype.name, lines.tolist()))
    except UnreadableFile as exc:
        out.append(("error", str(exc)))
    return out


def _same(path: Path, chunk_rows: int, quoting) -> None:
    for keep_bad in (True, False):
        fast = _outcome(read_delimited, path, chunk_rows, quoting, keep_bad)
        careful = _outcome(_read_delimited_careful, path, chunk_rows, quoting, keep_bad)
        assert fast == careful


@st.composite
def files(draw) -> bytes:
    header = draw(st.sampled_from(HEADERS))
    sep = draw(st.sampled_from([b",", b"\t", b"|"]))
    if header.count(b"\t") or header.count(b"|"):
        sep = b"\t" if b"\t" in header else b"|"
    row = st.lists(st.sampled_from(FIELDS + [b"v"] * 6), min_size=0, max_size=4)
    lines = draw(st.lists(row.map(sep.join), min_size=0, max_size=14))
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    text = eol.join([header, *lines])
    if draw(st.booleans()):
        text += eol
    if draw(st.booleans()):
        text = b"\xef\xbb\xbf" + text
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=files(),
    chunk_rows=st.integers(1, 5),
    quoting=st.sampled_from([True, None, False]),
    gz=st.booleans(),
)
def test_fast_and_careful_readers_agree_on_random_files(
    tmp_path_factory, text, chunk_rows, quoting, gz
):
    d = tmp_path_factory.mktemp("eq")
    path = d / ("t.csv.gz" if gz else "t.csv")
    path.write_bytes(gzip.compress(text) if gz else text)
    _same(path, chunk_rows, quoting)


CASES = {
    "clean": b"a,b\n1,2\n3,4\n5,6\n",
    "no final newline": b"a,b\n1,2\n3,4",
    "crlf": b"a,b\r\n1,\r\n,4\r\n",
    "blank and white space lines": b"a,b\n\n  \n\t\n1,2\n\xc2\xa0\n \r\n3,4\n",
    "one column": b"a\nx\n\n \ny\n,\n",
    "wrong widths": b"a,b,c\n1,2\n1,2,3,4\n1,2,3\n",
    "bad byte": b"a,b\n1,\xff\n2,3\n",
    "quote later": b'a,b\n1,2\n3,4\n5,6\n"7\n8",9\n10,11\n',
    "quoted header": b'"a\nb",c\n1,2\n',
    "stray cr": b"a,b\n1,2\r3,4\n5,6\n",
    "cr at the end": b"a,b\n1,2\r",
    "nul": b"a,b\n1,\x002\n3,4\n",
    "bom mid file": b"a,b\n1,2\n\xef\xbb\xbf3,4\n5,6\n",
    "tab with bare quotes": b'a\tb\n5" tall\tx\n"y\tz\n',
    "pipe": b"a|b\n1|2\n3|4|5\n",
    "header only": b"a,b\n",
    "bom only": b"\xef\xbb\xbf",
    "empty": b"",
    "no columns": b"\n1,2\n",
    "long field": b"a,b\n" + b"x" * 131_073 + b",1\n2,3\n",
}


@pytest.mark.parametrize("quoting", [True, None, False])
@pytest.mark.parametrize("chunk_rows", [1, 2, 1000])
@pytest.mark.parametrize("case", list(CASES))
def test_fast_and_careful_readers_agree_on_awkward_files(tmp_path, case, chunk_rows, quoting):
    path = tmp_path / "t.tsv"
    path.write_bytes(CASES[case])
    _same(path, chunk_rows, quoting)


def test_a_gzip_file_cut_short_stops_at_the_same_line_either_way(tmp_path):
    body = b"a,b\n" + b"".join(b"%d,x%d\n" % (i, i) for i in range(20_000))
    data = gzip.compress(body)
    for name, cut in [("cut.csv.gz", data[: len(data) // 2]), ("bad.csv.gz", _corrupt(data))]:
        path = tmp_path / name
        path.write_bytes(cut)
        _same(path, 1000, True)
        assert (
            "could not be read past line" in _outcome(read_delimited, path, 1000, True, True)[-1][1]
        )


def _corrupt(data: bytes) -> bytes:
    raw = bytearray(data)
    for i in range(len(raw) // 2, len(raw) // 2 + 64):
        raw[i] ^= 0x5A
    out = bytes(raw)
    with pytest.raises((OSError, EOFError, zlib.error)):
        gzip.decompress(out)
    return out


def test_chunks_hold_chunk_rows_rows_across_blocks(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b\n" + b"".join(b"%d,x\n\n" % i for i in range(10)))
    chunks = list(read_delimited(path, 3))
    assert [len(df) for df, _ in chunks] == [3, 3, 3, 1]
    assert chunks[1][1].tolist() == [8, 10, 12]
