"""A number as text (pophealth.query.text): the same on DuckDB and Spark for thousands of
awkward doubles, every decimal of up to 15 digits written as written, and the SQL small
(it was 48 KB per use, each part written out again wherever it was used)."""

from __future__ import annotations

import importlib.util
import math
import random
import re
import struct
from decimal import ROUND_HALF_UP, Decimal

import ibis
import pyarrow as pa
import pytest

from pophealth.engines import backend
from pophealth.query.text import float_text


def _random_doubles(n: int, seed: int) -> list[float | None]:
    rng = random.Random(seed)
    out: list[float | None] = [None, math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324]
    while len(out) < n:
        bits = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        if not (math.isnan(bits) or math.isinf(bits)):
            out.append(bits)
        out.append(rng.uniform(-1e9, 1e9) / 10 ** rng.randint(0, 12))
    return out


def _texts(engine: str, values: list[float | None]) -> list[str | None]:
    con = backend(engine)
    data = pa.table({"i": list(range(len(values))), "x": pa.array(values, pa.float64())})
    t = ibis.memtable(data)
    out = con.to_pyarrow(t.select("i", s=float_text(t.x)).order_by("i"))
    return out.column("s").to_pylist()


def _exact(x: float) -> str:
    """The rule, from the exact decimal value of ``x`` (Python's Decimal)."""
    if x % 1 == 0 and abs(x) < 1e15:
        return str(int(x))
    d = Decimal(x)
    e = d.adjusted()
    q = d.scaleb(-e).quantize(Decimal("1." + "0" * 14), rounding=ROUND_HALF_UP)
    if abs(q) >= 10:
        q, e = (q / 10).quantize(Decimal("1." + "0" * 14), rounding=ROUND_HALF_UP), e + 1
    digits = str(abs(q)).replace(".", "").rstrip("0")
    sign = "-" if x < 0 else ""
    if -4 <= e < 0:
        return sign + "0." + "0" * (-e - 1) + digits
    if 0 <= e < 15:
        whole, frac = digits[: e + 1].ljust(e + 1, "0"), digits[e + 1 :]
        return sign + whole + ("." + frac if frac else "")
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{'-' if e < 0 else '+'}{abs(e):02d}"


def test_every_decimal_of_up_to_15_digits_is_written_as_written():
    rng = random.Random(3)
    values, written = [], []
    for _ in range(5000):
        n = rng.randint(1, 15)
        digits = str(rng.randint(10 ** (n - 1), 10**n - 1)).rstrip("0")
        exponent = rng.randint(-300, 300)
        values.append(float(f"{digits[0]}.{digits[1:]}e{exponent}"))
        written.append(digits)
    for x, text, digits in zip(values, _texts("duckdb", values), written, strict=True):
        assert float(text) == x, (x, text)
        assert text.split("e")[0].replace("-", "").replace(".", "").strip("0") == digits


def test_the_text_follows_the_rule_from_the_exact_decimal():
    """Against the rule applied to the exact decimal value: equal but for the 15th digit
    of a double whose later digits lie within one rounding of a half (documented)."""
    values = _random_doubles(3000, seed=11)
    off = 0
    for x, text in zip(values, _texts("duckdb", values), strict=True):
        if x is None or math.isnan(x):
            assert text is None
        elif math.isinf(x):
            assert text == ("inf" if x > 0 else "-inf")
        elif text != _exact(x):
            # the same number but for one unit in the 15th significant digit
            a, b = (Decimal(re.sub(r"^-", "", s)) for s in (text, _exact(x)))
            assert abs(a - b) <= Decimal(10) ** (Decimal(a).adjusted() - 14), (x, text)
            off += 1
    assert off < len(values) * 0.06


def test_the_sql_is_small():
    t = ibis.table({"x": "float64"}, name="t")
    sql = ibis.to_sql(t.select(s=float_text(t.x)), dialect="duckdb")
    assert len(re.sub(r"\s+", " ", sql)) < 10_000


@pytest.mark.spark
@pytest.mark.skipif(importlib.util.find_spec("pyspark") is None, reason="pyspark not installed")
def test_duckdb_and_spark_write_the_same_text():
    values = _random_doubles(4000, seed=5)
    assert _texts("spark", values) == _texts("duckdb", values)
