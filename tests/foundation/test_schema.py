"""The canonical schema is declared once and drives DDL, Arrow types and docs."""

import duckdb
import pytest

from pophealth import schema


def test_every_table_has_documented_columns():
    for t in schema.TABLES.values():
        assert t.doc
        for c in t.columns:
            assert c.doc, f"{t.name}.{c.name} has no docstring"


@pytest.mark.parametrize("name", list(schema.TABLES))
def test_duckdb_ddl_creates_the_declared_table(name):
    con = duckdb.connect()
    con.execute(schema.duckdb_ddl(name))
    described = con.execute(f'DESCRIBE "{name}"').fetchall()
    assert [row[0] for row in described] == schema.table(name).column_names
    nullable = {row[0]: row[2] for row in described}
    for c in schema.table(name).columns:
        assert (nullable[c.name] == "YES") == (
            c.nullable and c.name not in schema.table(name).primary_key
        )


def test_arrow_schema_matches_declaration():
    s = schema.arrow_schema("events")
    assert s.names == schema.EVENTS.column_names
    assert str(s.field("date").type) == "date32[day]"
    assert not s.field("code").nullable


def test_markdown_lists_every_table_and_constraint():
    md = schema.to_markdown()
    for name in schema.TABLES:
        assert f"## `{name}`" in md
    assert "one of `female`, `male`, `unknown`" in md


def test_unknown_table_is_a_clear_error():
    with pytest.raises(KeyError, match="no canonical table 'event'"):
        schema.table("event")


def test_codes_are_pairs_with_a_known_system():
    for t in (schema.EVENTS, schema.MEDICATIONS):
        assert t["system"].allowed and set(t["system"].allowed) <= set(schema.CODE_SYSTEMS)
        assert not t["code"].nullable


def test_ethnicity_16_groups_into_5():
    groups = {g for _, g in schema.ETHNICITY_16.values()}
    assert groups == set(schema.ETHNICITY_5)


def test_fictional_codes_cannot_be_ons_codes():
    import re

    pat = re.compile(schema.LSOA_PATTERN)
    assert pat.match("X01000001") and pat.match("E01000001")
    assert not pat.match("Z01000001")
