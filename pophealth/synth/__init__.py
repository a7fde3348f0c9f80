"""The synthetic population: pophealth's canonical dataset, in a fictional region.

``generate(patients=N, seed=S)`` yields the canonical tables in chunks (Arrow tables,
one dict per chunk) — pure and deterministic: the same ``patients`` and ``seed`` give
the same rows. :func:`write_synthetic_store` streams them into a store.

Patients are made in fixed-size chunks, each from its own random stream, so memory
stays flat however many patients are asked for, and the first N patients of a run
depend only on the seed and the region (which is sized from the total).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from pophealth.schema import arrow_schema
from pophealth.scratch import SYNTH_PREFIX, make_dir, remove_stale
from pophealth.store import conform
from pophealth.synth import calibration
from pophealth.synth.patients import Codes, make_chunk, reference_calibration
from pophealth.synth.region import Region, make_region, rng_for

__all__ = [
    "CHUNK_SIZE",
    "EXTRACT_DATE",
    "calibration",
    "generate",
    "make_region",
    "write_synthetic_store",
]

#: The date the synthetic extract is taken (use it as the index date of programmes run on
#: synthetic data; also in the store metadata under ``synthetic.extract_date``).
EXTRACT_DATE = calibration.EXTRACT_DATE

#: Patients per chunk. Fixed (not derived from the machine) so output never depends on it.
CHUNK_SIZE = 100_000


def generate(
    *, patients: int, seed: int, chunk_size: int = CHUNK_SIZE, region: Region | None = None
) -> Iterator[dict[str, pa.Table]]:
    """Yield the synthetic population as dicts ``{table name: pa.Table}``.

    The first dict holds ``areas`` and ``practices``; each later one the patient-level
    tables of up to ``chunk_size`` patients. Every table conforms to the canonical
    Arrow schema. Pure: no I/O, and deterministic in (``patients``, ``seed``,
    ``chunk_size``).
    """
    if patients <= 0:
        raise ValueError(f"patients must be positive, not {patients}")
    if seed < 0:
        raise ValueError(f"seed must be zero or positive, not {seed}")
    region = region or make_region(patients, seed)
    yield {
        "areas": conform("areas", region.areas),
        "practices": conform("practices", region.practices),
    }
    codes = Codes()
    reference = None
    for k, first in enumerate(range(0, patients, chunk_size)):
        n = min(chunk_size, patients - first)
        if n < calibration.CALIBRATION_PATIENTS and reference is None:
            reference = reference_calibration(region, seed)
        calib = reference if n < calibration.CALIBRATION_PATIENTS else None
        yield make_chunk(
            region, codes, rng_for(seed, 1, k), first, n, calib, pathway_rng=rng_for(seed, 3, k)
        )


def write_synthetic_store(
    out: Path,
    *,
    patients: int,
    seed: int,
    progress=None,
    tmp_dir: str | os.PathLike | None = None,
):
    """Generate ``patients`` synthetic patients with ``seed`` into the store at ``out``.

    The tables are spooled to uncompressed Arrow files in a temporary folder while
    generating, then streamed into one atomic store snapshot (``Store.write``), so
    memory holds one chunk at a time. ``progress`` is an optional
    :class:`rich.progress.Progress`. Returns the reopened :class:`~pophealth.store.Store`.

    The spool folder, ``pophealth-synth-<host>-<pid>-…`` in ``tmp_dir`` (default: the
    system temporary directory), is removed at the end, or by a later run once this
    process is gone if it was killed (see :mod:`pophealth.scratch`); this run removes
    such folders of earlier, killed runs first.
    """
    from pophealth.store import Store

    out = Path(out)
    store = Store.open_or_new(out)
    parent = Path(tmp_dir) if tmp_dir is not None else Path(tempfile.gettempdir())
    remove_stale(parent, SYNTH_PREFIX)
    n_chunks = -(-patients // CHUNK_SIZE)
    gen_task = write_task = None
    if progress is not None:
        gen_task = progress.add_task(f"generating {patients:,} patients", total=n_chunks)
    spool = make_dir(SYNTH_PREFIX, parent)
    try:
        writers: dict[str, pa.ipc.RecordBatchFileWriter] = {}
        sinks = {}
        try:
            for i, chunk in enumerate(generate(patients=patients, seed=seed)):
                for name, table in chunk.items():
                    if name not in writers:
                        sinks[name] = pa.OSFile(str(spool / f"{name}.arrow"), "wb")
                        writers[name] = pa.ipc.new_file(sinks[name], arrow_schema(name))
                    writers[name].write_table(table)
                if progress is not None and i > 0:
                    progress.advance(gen_task)
        finally:
            for name, w in writers.items():
                w.close()
                sinks[name].close()
        if progress is not None:
            write_task = progress.add_task("writing the store", total=len(writers))

        def read(name: str):
            with pa.OSFile(str(spool / f"{name}.arrow"), "rb") as src:
                reader = pa.ipc.open_file(src)
                for b in range(reader.num_record_batches):
                    yield reader.get_batch(b)
            if progress is not None:
                progress.advance(write_task)

        tables = {name: read(name) for name in writers}
        return store.write(
            tables,
            provenance={"source": "pophealth synth", "patients": patients, "seed": seed},
            replace_all=True,
            extra_metadata={
                # `pophealth run` uses this as the default index date.
                "extract_date": calibration.EXTRACT_DATE.isoformat(),
                "synthetic": {
                    "patients": patients,
                    "seed": seed,
                    "extract_date": calibration.EXTRACT_DATE.isoformat(),
                    "region": "fictional (X-prefixed codes)",
                },
            },
        )
    finally:
        shutil.rmtree(spool, ignore_errors=True)
