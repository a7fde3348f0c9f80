"""Shared pieces of the patient model: the time frame, the per-chunk patient arrays
(:class:`Chunk`), the row collector (:class:`Out`) and the vectorised sampling helpers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pophealth.synth import calibration as cal
from pophealth.synth._build import Rows, day

E = day(cal.EXTRACT_DATE)
YEAR = 365.25
W_START = E - int(cal.DETAIL_YEARS * YEAR)
NULL = -1


# Hour-of-day weights of ED arrivals (busier late morning to evening).
_ED_HOURS = np.array(
    [2, 1.5, 1.2, 1, 1, 1, 1.5, 2.5, 4, 5.5, 6, 6, 6, 6, 6, 6, 6, 6, 5.5, 5, 4.5, 4, 3.5, 2.5]
)
_ED_HOURS_CUM = np.cumsum(_ED_HOURS / _ED_HOURS.sum())


# ---------------------------------------------------------------------------------
# Small vectorised helpers
# ---------------------------------------------------------------------------------


def choice(rng: np.random.Generator, probs, n: int) -> np.ndarray:
    cum = np.cumsum(np.asarray(probs, dtype=float))
    cum /= cum[-1]
    return np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(cum) - 1)


def spread(rng, who, counts, start, end):
    """Rows for ``counts[i]`` events of patient ``who[i]`` uniformly in [start, end]."""
    counts = np.asarray(counts, dtype=np.int64)
    rep = np.repeat(np.arange(len(who)), counts)
    span = np.maximum(end - start, 0)[rep]
    days = start[rep] + np.floor(rng.random(rep.size) * (span + 1)).astype(np.int64)
    return who[rep], days, rep


def regular(rng, who, start, end, interval: int):
    """Repeat issues every ``interval`` days (± a few) from ``start`` to ``end``."""
    offset = np.floor(rng.random(len(who)) * interval).astype(np.int64)
    first = start + offset
    counts = np.where(end >= first, (end - first) // interval + 1, 0)
    rep = np.repeat(np.arange(len(who)), counts)
    k = np.arange(rep.size) - np.repeat(np.cumsum(counts) - counts, counts)
    jitter = rng.integers(-3, 4, rep.size)
    days = np.clip(first[rep] + k * interval + jitter, start[rep], end[rep])
    return who[rep], days, rep


def time_of_day_us(rng, n: int) -> np.ndarray:
    hour = np.searchsorted(_ED_HOURS_CUM, rng.random(n), side="right")
    return (np.minimum(hour, 23) * 3600 + rng.integers(0, 60, n) * 60) * 1_000_000


def make_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pa.array(numbers.astype(np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


@dataclass
class Chunk:
    """Per-patient arrays of one chunk (index = patient number within the chunk)."""

    n: int
    age: np.ndarray  # years at the extract date (had they lived)
    dob: np.ndarray  # days
    female: np.ndarray
    male: np.ndarray
    sex: np.ndarray  # 0 female, 1 male, 2 unknown
    lsoa: np.ndarray  # current (true) LSOA index
    imdq: np.ndarray  # IMD quintile of the current LSOA (1 = most deprived)
    no2q: np.ndarray
    eth16: np.ndarray  # 0..15 (true ethnicity)
    eth5: np.ndarray  # 0..4
    end: np.ndarray  # last day of observation (death, departure or the extract date)
    w0: np.ndarray  # first day of the detail window
    current: np.ndarray  # alive and registered at the extract date
    district: np.ndarray  # district of the current LSOA (which trust they attend)


def by_band(values, lowers, age):
    idx = np.clip(np.searchsorted(np.asarray(lowers), age, side="right") - 1, 0, len(lowers) - 1)
    return np.asarray(values, dtype=float)[idx], idx


class Out:
    """The rows of one chunk, by table."""

    def __init__(self) -> None:
        self.events = Rows(("pid", "date", "code", "value", "unit"))
        self.meds = Rows(("pid", "date", "code", "qty", "qty_unit", "dose", "ddd"))
        self.adm = Rows(("pid", "adate", "ddate", "method", "dx", "proc", "cc", "prov"))
        self.ed = Rows(("pid", "arrive", "depart", "dx", "dest", "analgesia", "prov"))
        self.ops = Rows(
            (
                "pid",
                "start",
                "code",
                "urg",
                "grade",
                "dur",
                "abx",
                "skin",
                "normo",
                "dress",
                "bmi",
                "prov",
            )
        )

        self.qr = Rows(("pid", "response", "authored", "item", "yes"))

    def event(self, pid, date, code, value=np.nan, unit=NULL):
        self.events.add(pid=pid, date=date, code=code, value=value, unit=unit)

    def med(self, pid, date, code, qty, qty_unit, dose=NULL, ddd=np.nan):
        self.meds.add(pid=pid, date=date, code=code, qty=qty, qty_unit=qty_unit, dose=dose, ddd=ddd)


def onset(rng, c: Chunk, who, mean_years, min_age=0.0):
    """Diagnosis day: duration ~ Exponential(mean) before the end of observation."""
    age_end = c.age[who] - (E - c.end[who]) / YEAR
    onset_age = np.clip(age_end - rng.exponential(mean_years, len(who)), min_age, None)
    onset_age = np.minimum(onset_age, age_end)
    d = c.dob[who] + np.floor(onset_age * YEAR).astype(np.int64)
    return np.clip(d, c.dob[who], c.end[who])
