"""Public-health statistics with the national (OHID/UKHSA Fingertips) methods.

Every function is pure and vectorised, takes arrays (or column names of ``data=``, grouped
with ``by=``) and returns one row per group with the PHEindicatormethods output contract:
``value, lower95_0cl, upper95_0cl, lower99_8cl, upper99_8cl, confidence, statistic, method``.
See docs/statistics.md for worked examples and sources.
"""

from pophealth.stats._core import DEFAULT_CONFIDENCE, StatsInputError
from pophealth.stats.basic import mean, proportion, rate
from pophealth.stats.centiles import centiles
from pophealth.stats.funnels import funnel_limits, funnel_significance, proportion_funnel_limits
from pophealth.stats.inequality import quantiles, sii
from pophealth.stats.life_expectancy import LE_AGE_BANDS, life_expectancy
from pophealth.stats.standardised import ESP2013, ESP2013_BANDS, dsr, isr, isratio

__all__ = [
    "DEFAULT_CONFIDENCE",
    "ESP2013",
    "ESP2013_BANDS",
    "LE_AGE_BANDS",
    "StatsInputError",
    "centiles",
    "dsr",
    "funnel_limits",
    "funnel_significance",
    "isr",
    "isratio",
    "life_expectancy",
    "mean",
    "proportion",
    "proportion_funnel_limits",
    "quantiles",
    "rate",
    "sii",
]
