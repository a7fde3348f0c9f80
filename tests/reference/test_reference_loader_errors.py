"""Every loader's error path, on small bad files written to tmp_path: wrong header, bad
code pattern, duplicate key, out-of-range value, non-number, truncated file. Each error
message names the file, the row and the column."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import pytest

from pophealth.reference import loaders
from pophealth.reference._read import Col, FileSpec, ReferenceDataError

# (loader, spec, file suffix) for every spec-driven loader
CASES = {
    "file1": (loaders.load_imd2019_file1, loaders.FILE1),
    "file2": (loaders.load_imd2019_file2, loaders.FILE2),
    "file3": (loaders.load_imd2019_file3, loaders.FILE3),
    "file6": (loaders.load_imd2019_file6, loaders.FILE6),
    "file8": (loaders.load_imd2019_file8, loaders.FILE8),
    "air_quality": (loaders.load_air_quality, loaders.AIR_QUALITY_FILE),
    "file9": (loaders.load_imd2019_file9, loaders.FILE9),
    "imd2025": (loaders.load_imd2025, loaders.IOD2025),
    "fuel_poverty": (loaders.load_fuel_poverty, loaders.FUEL_POVERTY),
    "population": (loaders.load_population_lsoa11, loaders.POPULATION_LSOA11),
    "census_ts021": (loaders.load_census_ethnicity, loaders.CENSUS_TS021),
    "lsoa11_lsoa21": (loaders.load_lsoa11_lsoa21_lookup, loaders.LSOA11_LSOA21),
    "lsoa11_msoa11": (loaders.load_lsoa11_msoa11, loaders.LSOA11_MSOA11),
    "msoa11_msoa21": (loaders.load_msoa11_msoa21, loaders.MSOA11_MSOA21),
    "lsoa11_subicb": (loaders.load_lsoa11_subicb, loaders.LSOA11_SUBICB),
    "lsoa21_subicb": (loaders.load_lsoa21_subicb, loaders.LSOA21_SUBICB),
    "lsoa21_lad": (loaders.load_lsoa21_lad, loaders.LSOA21_LAD),
    "ruc11": (loaders.load_ruc11, loaders.RUC11),
    "ruc21": (loaders.load_ruc21, loaders.RUC21),
    "epraccur": (loaders.load_epraccur, loaders.EPRACCUR),
    "epcn_members": (loaders.load_epcn_members, loaders.EPCN_MEMBERS),
    "epcn_details": (loaders.load_epcn_details, loaders.EPCN_DETAILS),
    "subicb_icb": (loaders.load_subicb_icb, loaders.SUBICB_ICB),
}

# example codes for each pattern used by the specs (row i gets a distinct code)
_EXAMPLES = [
    (r"E01", lambda i: f"E01{i:06d}"),
    (r"[EW]01", lambda i: f"E01{i:06d}"),
    (r"[EWS]01", lambda i: f"E01{i:06d}"),
    (r"[EW]02", lambda i: f"E02{i:06d}"),
    (r"[EWS]02", lambda i: f"E02{i:06d}"),
    (r"[EWSN]0[6789]", lambda i: "E06000001"),
    (r"[EWSNK]\d{8}", lambda i: f"E38{i:06d}"),
    (r"[A-Z0-9]{3,6}", lambda i: f"A{i:05d}"),
    (r"(19|20)", lambda i: "20200101"),
]


def _value(col: Col, i: int) -> str:
    if col.pattern is not None:
        for prefix, make in _EXAMPLES:
            if col.pattern.startswith(prefix):
                return make(i)
        raise AssertionError(f"no example for {col.pattern}")
    if col.allowed is not None:
        return col.allowed[0]
    if col.kind in ("int", "float"):
        lo = col.minimum if col.minimum is not None and col.minimum > 0 else 0
        return str(int(lo))
    return f"name {i}"


def _write(path: Path, spec: FileSpec, rows: list[list[str]], header: list[str] | None) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        if header is not None:
            w.writerow(header)
        w.writerows(rows)
    return path


def _good(spec: FileSpec, n: int = 4) -> tuple[list[str], list[list[str]]]:
    header = [c.headers[0] for c in spec.columns]
    rows = [[_value(c, i + 1) for c in spec.columns] for i in range(n)]
    return header, rows


def _load(name: str, path: Path):
    loader, _ = CASES[name]
    try:
        return loader(path, complete=False)
    except TypeError:  # loaders of files without a fixed row count
        return loader(path)


def _assert_names(exc: ReferenceDataError, path: Path, row: int, column: str) -> None:
    msg = str(exc)
    assert str(path) in msg
    assert f"row {row}" in msg, msg
    assert repr(column) in msg or column in msg, msg
    assert exc.row == row and exc.column == column and exc.file == str(path)


@pytest.mark.parametrize("name", list(CASES))
def test_good_small_file_loads(name, tmp_path):
    _, spec = CASES[name]
    header, rows = _good(spec)
    frame = _load(name, _write(tmp_path / f"{name}.csv", spec, rows, header))
    assert len(frame) == 4


@pytest.mark.parametrize("name", list(CASES))
def test_wrong_header(name, tmp_path):
    _, spec = CASES[name]
    header, rows = _good(spec)
    target = len(header) - 1  # rename the last column
    wanted = header[target]
    header[target] = "Something else"
    path = _write(tmp_path / f"{name}.csv", spec, rows, header)
    with pytest.raises(ReferenceDataError) as err:
        _load(name, path)
    _assert_names(err.value, path, 1, wanted)
    assert "needs column" in str(err.value)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_code_pattern(name, tmp_path):
    _, spec = CASES[name]
    header, rows = _good(spec)
    j = next(k for k, c in enumerate(spec.columns) if c.pattern is not None)
    rows[2][j] = "Q99XYZ!!"
    path = _write(tmp_path / f"{name}.csv", spec, rows, header)
    with pytest.raises(ReferenceDataError) as err:
        _load(name, path)
    _assert_names(err.value, path, 4, header[j])  # data row 3 is file row 4
    assert "does not match the code pattern" in str(err.value)


KEYED = [n for n, (_, s) in CASES.items() if s.key]


@pytest.mark.parametrize("name", KEYED)
def test_duplicate_key(name, tmp_path):
    _, spec = CASES[name]
    header, rows = _good(spec)
    k = [c.name for c in spec.columns].index(spec.key[0])
    rows[3][k] = rows[1][k]
    path = _write(tmp_path / f"{name}.csv", spec, rows, header)
    with pytest.raises(ReferenceDataError) as err:
        _load(name, path)
    _assert_names(err.value, path, 5, header[k])
    assert "duplicate (first at row 3)" in str(err.value)


RANGED = [n for n, (_, s) in CASES.items() if any(c.maximum is not None for c in s.columns)]


@pytest.mark.parametrize("name", RANGED)
def test_out_of_range(name, tmp_path):
    _, spec = CASES[name]
    header, rows = _good(spec)
    j, col = next((k, c) for k, c in enumerate(spec.columns) if c.maximum is not None)
    rows[0][j] = str(int(col.maximum) + 1)  # e.g. decile 11
    path = _write(tmp_path / f"{name}.csv", spec, rows, header)
    with pytest.raises(ReferenceDataError) as err:
        _load(name, path)
    _assert_names(err.value, path, 2, header[j])
    assert f"above the maximum {col.maximum:g}" in str(err.value)


NUMERIC = [n for n, (_, s) in CASES.items() if any(c.kind != "str" for c in s.columns)]


@pytest.mark.parametrize("name", NUMERIC)
def test_not_a_number(name, tmp_path):
    _, spec = CASES[name]
    header, rows = _good(spec)
    j = next(k for k, c in enumerate(spec.columns) if c.kind != "str")
    rows[1][j] = "n/a"
    path = _write(tmp_path / f"{name}.csv", spec, rows, header)
    with pytest.raises(ReferenceDataError) as err:
        _load(name, path)
    _assert_names(err.value, path, 3, header[j])


def test_decile_11_in_file2_is_named(tmp_path):
    header, rows = _good(loaders.FILE2)
    j = [c.name for c in loaders.FILE2.columns].index("health_decile")
    rows[1][j] = "11"
    path = _write(tmp_path / "File_2.csv", loaders.FILE2, rows, header)
    with pytest.raises(ReferenceDataError) as err:
        loaders.load_imd2019_file2(path, complete=False)
    _assert_names(err.value, path, 3, header[j])
    assert "'11' above the maximum 10" in str(err.value)


def test_thousands_separators_and_decimal_integers(tmp_path):
    header, rows = _good(loaders.FILE1)
    rows[0][4], rows[0][5] = "29,199", "9"
    rows[1][4], rows[1][5] = "9852.00", "3.00"
    rows[2][4], rows[2][5], rows[3][4] = "32,844.00", "10", "1,234"
    frame = loaders.load_imd2019_file1(
        _write(tmp_path / "f1.csv", loaders.FILE1, rows, header), complete=False
    )
    assert frame["imd_rank"].tolist() == [29_199, 9_852, 32_844, 1_234]
    assert frame["imd_decile"].tolist()[:2] == [9, 3]


@pytest.mark.parametrize("cell", ["1,12", "0,5", "12,34,567", "1,2345", ",123"])
def test_a_comma_that_is_not_a_thousands_separator_is_rejected(tmp_path, cell):
    # "1,12" (a decimal comma) was read as 112: an NO2 component 100 times the limit ratio
    spec = loaders.AIR_QUALITY_FILE
    header, rows = _good(spec)
    j = [c.name for c in spec.columns].index("no2_component")
    rows[1][j] = cell
    path = _write(tmp_path / "aq.csv", spec, rows, header)
    with pytest.raises(ReferenceDataError, match="not a number") as err:
        loaders.load_air_quality(path, complete=False)
    _assert_names(err.value, path, 3, header[j])
    assert repr(cell) in str(err.value)


def test_fractional_rank_is_rejected(tmp_path):
    header, rows = _good(loaders.FILE1)
    rows[2][4] = "12.5"
    path = _write(tmp_path / "f1.csv", loaders.FILE1, rows, header)
    with pytest.raises(ReferenceDataError, match="not a whole number") as err:
        loaders.load_imd2019_file1(path, complete=False)
    _assert_names(err.value, path, 4, header[4])


def test_rows_after_a_blank_line_keep_their_line_numbers(tmp_path):
    header, rows = _good(loaders.FILE1, n=5)
    rows[3][5] = "11"  # data row 4: line 5, or line 6 once a blank line is above it
    path = _write(tmp_path / "f1.csv", loaders.FILE1, rows, header)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3] + ["\n"] + lines[3:] + ["\n"]))
    with pytest.raises(ReferenceDataError, match="above the maximum 10") as err:
        loaders.load_imd2019_file1(path, complete=False)
    _assert_names(err.value, path, 6, header[5])
    rows[3][5] = "1"
    path.write_text("".join(_write(path, loaders.FILE1, rows, header).read_text() + "\n\n"))
    assert len(loaders.load_imd2019_file1(path, complete=False)) == 5  # blank lines: no rows


def test_truncated_at_a_line_boundary(tmp_path):
    header, rows = _good(loaders.FILE2, n=6)
    path = _write(tmp_path / "File_2.csv", loaders.FILE2, rows, header)
    with pytest.raises(ReferenceDataError, match="looks truncated") as err:
        loaders.load_imd2019_file2(path)  # complete=True: 32,844 rows expected
    assert err.value.row == 7 and str(path) in str(err.value)
    assert "32,844" in str(err.value)


def test_truncated_mid_line(tmp_path):
    header, rows = _good(loaders.FILE2)
    path = _write(tmp_path / "File_2.csv", loaders.FILE2, rows, header)
    text = path.read_text()
    path.write_text(text[: text.rindex(",") - 3])  # cut inside the last row
    with pytest.raises(ReferenceDataError) as err:
        loaders.load_imd2019_file2(path, complete=False)
    assert err.value.row == 5 and "missing value" in str(err.value)


def test_cross_column_checks(tmp_path):
    header, rows = _good(loaders.FUEL_POVERTY)
    rows[1][5] = "100"
    rows[1][6] = "101"
    path = _write(tmp_path / "fp.csv", loaders.FUEL_POVERTY, rows, header)
    with pytest.raises(ReferenceDataError, match="more than the number of households") as err:
        loaders.load_fuel_poverty(path, complete=False)
    _assert_names(err.value, path, 3, "households_fuel_poor")

    header, rows = _good(loaders.POPULATION_LSOA11)
    rows[0][3] = "5"  # age 0 = 5 but total 0
    path = _write(tmp_path / "pop.csv", loaders.POPULATION_LSOA11, rows, header)
    with pytest.raises(ReferenceDataError, match="sum of the single-year") as err:
        loaders.load_population_lsoa11(path, complete=False)
    _assert_names(err.value, path, 2, "total_population")


def test_population_gz(tmp_path):
    header, rows = _good(loaders.POPULATION_LSOA11)
    plain = _write(tmp_path / "pop.csv", loaders.POPULATION_LSOA11, rows, header)
    gz = tmp_path / "pop.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert len(loaders.load_population_lsoa11(gz, complete=False)) == 4
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(gzip.compress(plain.read_bytes())[:-20])  # truncated gzip
    with pytest.raises(ReferenceDataError, match=re.escape(str(bad))):
        loaders.load_population_lsoa11(bad, complete=False)


def test_lookup_change_flag_must_match_pairs(tmp_path):
    spec = loaders.LSOA11_LSOA21
    header = [c.headers[0] for c in spec.columns]
    rows = [
        ["E01000001", "A 001A", "E01000001", "A 001A", "U", "E06000001", "A"],
        ["E01000002", "A 001B", "E01000010", "A 001E", "S", "E06000001", "A"],
        ["E01000002", "A 001B", "E01000011", "A 001F", "S", "E06000001", "A"],
        ["E01000003", "A 001C", "E01000012", "A 001G", "U", "E06000001", "A"],
        ["E01000004", "A 001D", "E01000012", "A 001G", "M", "E06000001", "A"],
    ]
    path = _write(tmp_path / "lookup.csv", spec, rows, header)
    with pytest.raises(ReferenceDataError, match="disagrees with the pairs") as err:
        loaders.load_lsoa11_lsoa21_lookup(path, complete=False)
    _assert_names(err.value, path, 5, "CHGIND")


def test_esp2013_errors(tmp_path):
    spec = loaders.ESP2013_SPEC
    header = [c.headers[0] for c in spec.columns]
    from pophealth.stats import ESP2013

    def rows(weights):
        out = []
        for k, w in enumerate(weights):
            lo = 5 * k
            label = "90+" if k == 18 else f"{lo}-{lo + 4}"
            out.append([label, str(lo), "" if k == 18 else str(lo + 4), str(int(w))])
        return out

    good = _write(tmp_path / "esp.csv", spec, rows(ESP2013), header)
    assert loaders.esp2013_matches_builtin(loaders.load_esp2013(good))
    w = list(ESP2013)
    w[3] += 1
    bad = _write(tmp_path / "esp_bad.csv", spec, rows(w), header)
    with pytest.raises(ReferenceDataError, match="100,001") as err:
        loaders.load_esp2013(bad)
    assert err.value.column == "esp2013_weight" and err.value.row == 20
    gap = rows(ESP2013)
    gap[1][1] = "6"  # 5-9 band starting at 6
    shifted = _write(tmp_path / "esp_shift.csv", spec, gap, header)
    with pytest.raises(ReferenceDataError, match="should start at 5") as err:
        loaders.load_esp2013(shifted)
    assert err.value.row == 3


def test_epraccur_headerless_wrong_width(tmp_path):
    path = tmp_path / "epraccur.csv"
    path.write_text('"A81001","X","Y63"\n')
    with pytest.raises(ReferenceDataError, match="27 columns") as err:
        loaders.load_epraccur(path)
    assert err.value.row == 1


def test_epraccur_headerless_good_and_bad(tmp_path):
    cells = [""] * 27
    cells[0], cells[1], cells[10], cells[12], cells[14], cells[25] = (
        "A81001", "SURGERY", "19740401", "A", "16C", "4",
    )  # fmt: skip
    other = list(cells)
    other[0], other[10] = "A81002", "1974-04-01"
    path = tmp_path / "epraccur.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh, quoting=csv.QUOTE_ALL).writerows([cells, other])
    with pytest.raises(ReferenceDataError) as err:
        loaders.load_epraccur(path)
    _assert_names(err.value, path, 2, "open_date")  # headerless: row 2 is line 2


def test_xlsx_header_search_and_errors(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    spec = loaders.FUEL_POVERTY
    header, rows = _good(spec)
    wb = openpyxl.Workbook()
    wb.active.title = "Cover"
    ws = wb.create_sheet("Table 4")
    ws.append(["Table 4: Fuel Poverty by LSOA"])
    ws.append([])
    ws.append([c.headers[1] for c in spec.columns])  # the workbook's own headers
    for r in rows:
        ws.append([int(v) if v.isdigit() else v for v in r])
    ws.append([None] * 7 + ["England"])  # footer below the table is not data
    path = tmp_path / "fp.xlsx"
    wb.save(path)
    frame = loaders.load_fuel_poverty(path, complete=False)
    assert len(frame) == 4 and frame.attrs["first_row"] == 4
    ws.cell(row=6, column=8, value=140.0)  # % above 100 in worksheet row 6
    wb.save(path)
    with pytest.raises(ReferenceDataError) as err:
        loaders.load_fuel_poverty(path, complete=False)
    _assert_names(err.value, path, 6, "Proportion of households fuel poor (%)")
    ws.cell(row=3, column=6, value="Homes")  # wrong header in worksheet row 3
    wb.save(path)
    with pytest.raises(ReferenceDataError, match="row 3 \\(header\\)") as err:
        loaders.load_fuel_poverty(path, complete=False)
    assert err.value.row == 3 and err.value.column == "households"
    ws.cell(row=3, column=6, value="Number of households")
    ws.cell(row=6, column=8, value=0)
    ws.cell(row=5, column=1).value = None  # a blank key inside the table: rows 6-7 follow
    wb.save(path)
    with pytest.raises(ReferenceDataError, match="goes on below") as err:
        loaders.load_fuel_poverty(path, complete=False)
    _assert_names(err.value, path, 5, "LSOA Code")
    bad = tmp_path / "not.xlsx"
    bad.write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(ReferenceDataError, match="not a readable Excel workbook"):
        loaders.load_fuel_poverty(bad)


def test_missing_file(tmp_path):
    with pytest.raises(ReferenceDataError, match="file not found"):
        loaders.load_imd2019_file1(tmp_path / "nope.csv")


def test_boundaries_errors(tmp_path):
    def feature(code, kind="Polygon"):
        return {
            "type": "Feature",
            "properties": {"LSOA11CD": code},
            "geometry": {"type": kind, "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
        }

    def write(features, name="b.geojson.gz"):
        path = tmp_path / name
        data = json.dumps({"type": "FeatureCollection", "features": features}).encode()
        path.write_bytes(gzip.compress(data))
        return path

    ok = write([feature("E01000001"), feature("W01000002")])
    got = loaders.load_boundaries(ok, complete=False, codes={"W01000002"})
    assert [f["id"] for f in got["features"]] == ["W01000002"]
    with pytest.raises(ReferenceDataError, match="34,753"):
        loaders.load_boundaries(ok)
    dup = write([feature("E01000001"), feature("E01000001")])
    with pytest.raises(ReferenceDataError, match="duplicate LSOA") as err:
        loaders.load_boundaries(dup, complete=False)
    assert err.value.row == 2 and err.value.column == "LSOA11CD"
    pts = write([feature("E01000001", "Point")])
    with pytest.raises(ReferenceDataError, match="not a polygon"):
        loaders.load_boundaries(pts, complete=False)
    cut = tmp_path / "cut.geojson.gz"
    cut.write_bytes(ok.read_bytes()[:-10])
    with pytest.raises(ReferenceDataError, match="not readable GeoJSON"):
        loaders.load_boundaries(cut, complete=False)


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "corruption", ["truncated", "duplicated", "decile_11", "decile_off_by_one", "wrong_header"]
)
def test_corrupted_copies_of_the_real_file2(shared_data, tmp_path, corruption):
    from tests.reference.conftest import real

    lines = real(shared_data, "imd2019_file2").read_text(encoding="utf-8-sig").splitlines()
    path = tmp_path / "File_2_-_IoD2019_Domains_of_Deprivation.csv"
    if corruption == "truncated":  # cut mid-way through line 20,001
        text = "\n".join(lines[:20_000]) + "\n" + lines[20_000][:25]
        row, column, why = 20_001, "Local Authority District code (2019)", "missing value"
    elif corruption == "duplicated":  # line 101 repeats line 100's LSOA code
        code = lines[99].split(",")[0]
        lines[100] = code + lines[100][9:]
        text = "\n".join(lines)
        row, column, why = 101, "LSOA code (2011)", "duplicate (first at row 100)"
    elif corruption == "decile_11":
        cells = lines[500].split(",")
        assert cells[-1] in {str(d) for d in range(1, 11)}
        lines[500] = ",".join([*cells[:-1], "11"])
        text = "\n".join(lines)
        row, column, why = 501, "Living Environment Decile", "above the maximum 10"
    elif corruption == "decile_off_by_one":  # a valid decile that is not its rank's
        cells = lines[700].split(",")
        cells[-1] = str(int(cells[-1]) % 10 + 1)
        lines[700] = ",".join(cells)
        text = "\n".join(lines)
        row, column, why = 701, "Living Environment Decile", "is not the decile of the rank"
    else:
        lines[0] = lines[0].replace("Crime Rank", "Crime Rnak")
        text = "\n".join(lines)
        row, column, why = 1, "Crime Rank", "needs column"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ReferenceDataError) as err:
        loaders.load_imd2019_file2(path)
    msg = str(err.value)
    assert str(path) in msg and f"row {row}" in msg and why in msg, msg
    assert err.value.row == row and column in err.value.column
