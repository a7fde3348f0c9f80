"""The HTML report: aggregate-only, so a worklist is named but its length is not shown."""

import datetime as dt

import pandas as pd

from pophealth.programmes import Output, ProgrammeResult
from pophealth.report import render_html


def test_worklists_are_listed_without_their_number_of_patients():
    worklist = Output(
        "cvd_pharmacist_worklist_pcn_X",
        "patient",
        pd.DataFrame({"patient_id": ["pid-7f3a01", "pid-7f3a02", "pid-7f3a03"]}),
        "Patients to review",
    )
    result = ProgrammeResult("cvd", "CVD", dt.date(2026, 3, 31), "duckdb", outputs=[worklist])
    page = render_html([result], title="t")
    assert "cvd_pharmacist_worklist_pcn_X" in page and "Patients to review" in page
    assert "3 rows" not in page and ": 3" not in page
    assert "pid-7f3a" not in page
