"""docs/query.md: every Python code block runs, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "query.md"


def test_query_guide_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 8
    namespace: dict = {}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{DOC.name} block {i + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"docs/query.md code block {i + 1} failed: {exc!r}") from exc
    out = capsys.readouterr().out
    assert "variable 'oops'" in out and "variable 'bad'" in out
    table, result = namespace["table"], namespace["result"]
    assert len(table) > 0 and list(table.columns)[:2] == ["patient_id", "age_band"]
    assert {"numerator", "denominator", "value", "lower95_0cl", "upper95_0cl"} <= set(
        result.columns
    )
    assert result["interval_end"].nunique() == 6
