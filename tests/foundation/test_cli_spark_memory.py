"""Spark running out of memory stops a command with one line saying which settings it ran
with and what to change, not a Java stack trace.

The text is Spark 4's own, as `pophealth` met it this session: the CVD programme on 1 M
synthetic patients with the default 4 GiB driver (benchmarks/bench_cvd.py 1000000 spark)."""

from __future__ import annotations

import pytest
import typer

from pophealth.commands._common import engine_errors, spark_out_of_memory

SPARK_OOM = (
    "An error occurred while calling o189.getResult.\n: org.apache.spark.SparkException: "
    "Job aborted due to stage failure: Task 0 in stage 72.0 failed 1 times, most recent "
    "failure: Lost task 0.0 in stage 72.0 (TID 123) (localhost executor driver): "
    "org.apache.spark.memory.SparkOutOfMemoryError: [UNABLE_TO_ACQUIRE_MEMORY] Unable to "
    "acquire 262144 bytes of memory, got 131072. SQLSTATE: 53200"
)


def test_the_message_names_the_settings_and_what_to_change(monkeypatch):
    monkeypatch.setenv("POPHEALTH_SPARK_DRIVER_MEMORY", "3g")
    monkeypatch.delenv("POPHEALTH_SPARK_SHUFFLE_PARTITIONS", raising=False)
    said = spark_out_of_memory(RuntimeError(SPARK_OOM))
    assert said is not None
    assert "driver memory 3g, 4 shuffle partitions" in said
    assert "POPHEALTH_SPARK_DRIVER_MEMORY" in said and "--engine duckdb" in said
    assert spark_out_of_memory(RuntimeError("java.lang.OutOfMemoryError: Java heap space"))
    assert spark_out_of_memory(ValueError("a column named 'valeu'")) is None


def test_a_spark_memory_error_ends_the_command_and_others_pass_through(capsys):
    with pytest.raises(typer.Exit) as stopped, engine_errors("spark"):
        raise RuntimeError(SPARK_OOM)
    assert stopped.value.exit_code == 2
    err = capsys.readouterr().err
    assert "Spark ran out of memory" in err and "o189" not in err
    with pytest.raises(RuntimeError), engine_errors("spark"):
        raise RuntimeError("something else")
    with pytest.raises(RuntimeError), engine_errors("duckdb"):  # only Spark's is translated
        raise RuntimeError(SPARK_OOM)
