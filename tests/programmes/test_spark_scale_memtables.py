"""Spark: a join with an in-memory table (a code list's role table, a trend's month ends)
leaves the big table where it is.

Spark cannot size a table made from a pandas frame, so it planned one as large: the CVD
monthly BP trend's cross join of the tagged readings with its 24 month ends ran as a
cartesian product of P x P tasks (4,096 tasks per stage with 64 shuffle partitions, on a
200,000-patient store), and the role tables' joins shuffled every event row by code. The
tests set Spark's size threshold for broadcasting to -1, as a region-sized ``events``
table exceeds it: only the hint pophealth.engines adds to in-memory tables can broadcast
them then."""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
import pytest

from pophealth.engines import backend

pytestmark = pytest.mark.spark


@pytest.fixture
def con(tmp_path):
    con = backend("spark")
    session = con._session
    before = session.conf.get("spark.sql.autoBroadcastJoinThreshold")
    session.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    path = tmp_path / "events.parquet"
    pd.DataFrame(
        {
            "patient_id": [f"p{i}" for i in range(200)],
            "code": [str(i % 7) for i in range(200)],
            "date": [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(200)],
        }
    ).to_parquet(path)
    con.read_parquet(str(path), table_name="scale_events")
    yield con
    session.conf.set("spark.sql.autoBroadcastJoinThreshold", before)


def _plan(con, expr) -> str:
    con._run_pre_execute_hooks(expr)  # registers the in-memory tables, as a query does
    frame = con._session.sql(con.compile(expr))
    return frame._jdf.queryExecution().executedPlan().toString()


def test_a_cross_join_with_an_in_memory_table_is_no_cartesian_product(con):
    events = con.table("scale_events")
    ends = ibis.memtable({"month_end": [dt.date(2025, 3, 31), dt.date(2025, 4, 30)]})
    paired = events.cross_join(ends)
    paired = paired.filter(paired.date <= paired.month_end)
    plan = _plan(con, paired)
    assert "CartesianProduct" not in plan
    assert "BroadcastNestedLoopJoin" in plan
    # and the rows are the same as the cross join's: every event with each later month end
    assert paired.count().to_pyarrow().as_py() == 90 + 120


def test_an_equi_join_with_an_in_memory_table_does_not_shuffle_the_big_table(con):
    events = con.table("scale_events")
    roles = ibis.memtable({"code": ["1", "3"], "role": ["sbp", "dbp"]})
    tagged = events.join(roles, "code")
    plan = _plan(con, tagged)
    assert "SortMergeJoin" not in plan
    assert "BroadcastHashJoin" in plan
    counts = tagged.group_by("role").aggregate(n=tagged.count()).to_pandas()
    assert dict(zip(counts["role"], counts["n"], strict=True)) == {"sbp": 29, "dbp": 29}
