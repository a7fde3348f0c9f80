"""The programmes' charts say where a count is withheld: an SPC month whose counts are
withheld is marked on the chart and listed in its data (the line is not drawn straight
across it); a practice whose numerator is withheld is listed in the funnel's data; a chart
that is not drawn is named in a note; the variation is said in words; the register as a
whole is not a PCN called "Total"."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pophealth.charts import chart_data
from pophealth.programmes.asthma.programme import _spc_figures, _tier_chart
from pophealth.programmes.cvd import _practice_funnel, _spc_section


def _monthly_cvd(withheld_month: int | None) -> pd.DataFrame:
    ends = pd.date_range("2024-04-30", periods=24, freq="ME").date
    rng = np.random.default_rng(4)
    den = np.full(24, 400.0)
    num = np.round(rng.normal(240, 10, 24) / 5) * 5
    if withheld_month is not None:
        num[withheld_month] = np.nan
    return pd.DataFrame(
        {"pcn_name": "North PCN", "month_end": ends, "numerator": num, "denominator": den}
    )


def test_cvd_spc_marks_a_withheld_month_and_names_the_variation_in_words():
    section = _spc_section(_monthly_cvd(withheld_month=10))
    (fig,) = section.figures
    data = chart_data(fig.figure).frame
    assert len(data) == 24  # the withheld month is a row of the chart's data, not missing
    assert data.iloc[10].isna().any()
    assert "_" not in fig.caption and "withheld" in fig.caption
    assert "special_cause" not in fig.caption and "common_cause" not in fig.caption


def test_cvd_funnel_lists_a_practice_whose_numerator_is_withheld():
    practices = pd.DataFrame(
        {
            "indicator": "statin",
            "practice_id": ["A1", "A2", "A3", "A4"],
            "numerator": [40.0, 55.0, 30.0, np.nan],
            "denominator": [100.0, 120.0, 80.0, 40.0],
        }
    )
    practices["value"] = practices["numerator"] * 100 / practices["denominator"]
    fig = _practice_funnel(practices, "statin")
    data = chart_data(fig).frame
    assert "A4" in data.iloc[:, 0].astype(str).tolist()


def _asthma_spc(months: int, released_pcn: int) -> pd.DataFrame:
    rows = []
    for pcn in ("Total", "East PCN", "West PCN"):
        for k in range(months):
            num, den = 30.0, 200.0
            if pcn == "West PCN" and k >= released_pcn:
                num = den = np.nan
            if pcn == "Total" and k == 3:
                num = np.nan  # a withheld month of the whole region
            rows.append((pcn, f"2025-{k + 1:02d}", num, den))
    return pd.DataFrame(rows, columns=["pcn", "month", "numerator", "denominator"])


def test_asthma_spc_notes_a_pcn_not_drawn_and_marks_withheld_months():
    figs, notes = _spc_figures(_asthma_spc(months=8, released_pcn=1))
    titles = [t for t, _ in figs]
    assert any("Whole region" in t for t in titles) and any("East PCN" in t for t in titles)
    assert not any("West PCN" in t for t in titles)
    assert any("West PCN" in n for n in notes)
    region = chart_data(dict(figs)[next(t for t in titles if "Whole region" in t)]).frame
    assert len(region) == 8 and region.iloc[3].isna().any()


class _View:
    def __init__(self, frame):
        self.breakdowns = frame


def test_asthma_tier_chart_names_the_whole_register_first():
    b = pd.DataFrame(
        {
            "breakdown": "pcn",
            "group": ["East PCN", "Total", "West PCN"],
            "value": [10.0, 12.0, 14.0],
        }
    )
    fig = _tier_chart({"tier_high": _View(b), "tier_moderate": _View(b)})
    xs = list(fig.data[0].x)
    assert xs[0] == "Whole region" and "Total" not in xs
