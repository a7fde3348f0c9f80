"""Registrations for patients whose source records none (``--registrations infer-missing``).

Every programme counts the patients *registered* with a practice on its index date. A
FHIR export from outside GP systems (e.g. Synthea) carries no ``Patient.generalPractitioner``
and an OMOP CDM person often has no ``care_site_id``; without this rule such a store has
no registered population at all. The rule runs at the end of an ingest, in DuckDB, over
evidence the importers spill while mapping (:meth:`pophealth.ingest.sink.Run.evidence`),
and only for patients with **no recorded registration** in this run (and, with
``--append``, none in the store). Recorded registrations are never changed. Inferred
rows carry ``registrations.source = 'inferred'``.

FHIR — from primary-care encounters
    A primary-care encounter is an Encounter of class ambulatory or virtual (``AMB``,
    ``VR``) with a serviceProvider Organization and a start date. It is
    *general-practice style* when its type is a general examination / well-child /
    wellness / general-practice consultation, or its serviceProvider is a GP practice
    (ODS role RO76, or a GP-practice organisation type). When a patient has any
    general-practice style encounter, only those count; otherwise every ambulatory one
    does. The practice is the serviceProvider of the patient's **most recent** counted
    encounter (ties: the provider with more counted encounters, then the lower id); one
    registration per patient, starting at the patient's first counted encounter with that
    practice (or the UK Core registration-period start on the Patient, when present) and
    ending at the date of death (open for the living). The practice is the Organization's
    ODS code, or — for an Organization without one — ``org-`` and 16 hex digits of a keyed
    hash of its first identifier (else its ``Organization/id``); its name comes from
    ``Organization.name``; PCN and geography are unknown.

OMOP — from observation periods
    For a person without a care site, each observation period is a registration period;
    the practice is the care site of most of the person's visits (ties: the latest
    visit), else the explicit placeholder practice :data:`UNKNOWN_PRACTICE`. The person's
    **last** period ends at their death, or stays open: an observation period ends where
    the data stop (ETLs such as ETL-Synthea end it at the last recorded event; CPRD at the
    practice's last collection), which is not a deregistration. Earlier periods keep their
    recorded end. Caveat: a person who truly left before the extract stays registered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pophealth.ingest.sink import EVIDENCE, EVIDENCE_COLUMNS

if TYPE_CHECKING:
    from pophealth.ingest.sink import Run

#: Practice of an inferred OMOP registration when none of the person's visits names a
#: care site.
UNKNOWN_PRACTICE = "UNKNOWN"
UNKNOWN_PRACTICE_NAME = "Unknown practice (inferred registration: no care site recorded)"

RULES = {
    "fhir": (
        "patients without a recorded registration: one registration with the serviceProvider "
        "of their most recent primary-care encounter (class AMB/VR; general-practice style "
        "encounters preferred), from their first such encounter with it (or the "
        "registration-period start) to death or open"
    ),
    "omop": (
        "persons without a care site: each observation period (the last one open, or to "
        "death), at the care site of most of their visits, else the placeholder practice "
        f"{UNKNOWN_PRACTICE!r}"
    ),
}


def _date(col: str) -> str:
    return f"TRY_CAST(left({col}, 10) AS DATE)"


def infer_registrations(con, run: Run) -> dict[str, Any] | None:
    """Create ``inferred_registrations`` / ``inferred_practices`` (all VARCHAR, as the spills)
    and ``reg_recorded_new`` (patients with a recorded registration in this run) on ``con``.

    Returns what to record in the store's provenance (None when the run had no evidence and
    the mode is the default), and adds the summary line to ``run.notes``.
    """
    q = lambda files: f"read_parquet({[str(p) for p in files]!r}, union_by_name=true)"  # noqa: E731
    regs = run._spills.get("registrations", [])
    if regs:
        con.execute(
            f"""
            CREATE TABLE reg_recorded_new AS
            SELECT DISTINCT {run._pid("coalesce(s.patient_id, p.pid)")} AS patient_id
            FROM {q(regs)} s LEFT JOIN idx_patient p ON s._pref = p.key AND p.n = 1
            WHERE coalesce(s.patient_id, p.pid) IS NOT NULL
              AND coalesce(s.source, 'recorded') <> 'inferred'
              AND s._rkey NOT IN (SELECT rkey FROM merged_records)
            """
        )
    else:
        con.execute("CREATE TABLE reg_recorded_new (patient_id VARCHAR)")
    con.execute(
        "CREATE TABLE inferred_registrations (patient_id VARCHAR, practice_id VARCHAR, "
        "start_date VARCHAR, end_date VARCHAR, source VARCHAR)"
    )
    con.execute("CREATE TABLE inferred_practices (practice_id VARCHAR, name VARCHAR)")
    evidence = run._spills.get(EVIDENCE, [])
    if run.registrations != "infer-missing":
        run.notes.append(
            "registrations: only those the source records (--registrations recorded); none inferred"
        )
        return {"mode": run.registrations, "inferred": 0, "patients": 0}
    if not evidence:
        return None

    # -- the evidence, with references resolved -----------------------------------------
    cols = ", ".join(f"e.{c}" for c in EVIDENCE_COLUMNS if not c.startswith("_"))
    con.execute(
        f"""
        CREATE TABLE ev AS
        SELECT {cols},
               {run._pid("coalesce(e.patient_id, p.pid)")} AS pid,
               coalesce(e.practice_id, o.practice_id) AS practice,
               coalesce(e.name, o.name) AS practice_name,
               CASE WHEN e.is_gp = '1' OR o.is_gp = '1' THEN 2 ELSE 1 END AS tier,
               {_date("e.date")} AS d,
               {_date("e.end_date")} AS d_end
        FROM {q(evidence)} e
        LEFT JOIN idx_patient p ON e._pref = p.key AND p.n = 1
        LEFT JOIN idx_provider o ON e._mref = o.key
        """
    )
    # patients with a registration already: recorded in this run, or any in the store
    # (with --append; a patient whose registration an earlier run inferred keeps it)
    con.execute("CREATE TABLE reg_any AS SELECT patient_id FROM reg_recorded_new")
    earlier = run.append and run.store is not None and run.store.snapshot is not None
    if earlier and run.store.row_counts().get("registrations", 0):
        path = run.store.table_path("registrations")
        con.execute(f"INSERT INTO reg_any SELECT patient_id FROM read_parquet('{path}')")
    deaths = [f"SELECT patient_id, date_of_death FROM {q(run._spills.get('patients', []))}"]
    if not run._spills.get("patients"):
        deaths = ["SELECT NULL::VARCHAR AS patient_id, NULL::VARCHAR AS date_of_death"]
    if earlier and run.store.row_counts().get("patients", 0):
        path = run.store.table_path("patients")
        deaths.append(
            f"SELECT patient_id, CAST(date_of_death AS VARCHAR) FROM read_parquet('{path}')"
        )
    con.execute(
        f"""
        CREATE TABLE death AS
        SELECT patient_id, min({_date("date_of_death")}) AS died
        FROM ({" UNION ALL ".join(deaths)}) GROUP BY patient_id
        """
    )
    con.execute(
        """
        CREATE TABLE eligible AS
        SELECT DISTINCT pid FROM ev
        WHERE pid IS NOT NULL
          -- a patient loaded (this run, or the store with --append) ...
          AND pid IN (SELECT patient_id FROM death WHERE patient_id IS NOT NULL)
          -- ... with no registration yet
          AND pid NOT IN (SELECT patient_id FROM reg_any WHERE patient_id IS NOT NULL)
        """
    )

    # -- FHIR: primary-care encounters --------------------------------------------------
    con.execute(
        """
        INSERT INTO inferred_registrations
        WITH enc AS (
            SELECT * FROM ev
            WHERE kind = 'encounter' AND practice IS NOT NULL AND d IS NOT NULL
              AND pid IN (SELECT pid FROM eligible)
        ),
        top AS (SELECT pid, max(tier) AS t FROM enc GROUP BY pid),
        counted AS (SELECT enc.* FROM enc JOIN top ON enc.pid = top.pid AND enc.tier = top.t),
        per_practice AS (
            SELECT pid, practice, max(d) AS last, count(*) AS n, min(d) AS first
            FROM counted GROUP BY pid, practice
        ),
        pick AS (
            SELECT * FROM per_practice
            QUALIFY row_number() OVER (
                PARTITION BY pid ORDER BY last DESC, n DESC, practice ASC) = 1
        ),
        first_any AS (SELECT pid, practice, min(d) AS first FROM enc GROUP BY pid, practice),
        started AS (
            SELECT pid, min(d) AS start FROM ev WHERE kind = 'start' AND d IS NOT NULL
            GROUP BY pid
        )
        SELECT pick.pid, pick.practice,
               CAST(coalesce(started.start, first_any.first) AS VARCHAR),
               CAST(death.died AS VARCHAR), 'inferred'
        FROM pick
        JOIN first_any ON first_any.pid = pick.pid AND first_any.practice = pick.practice
        LEFT JOIN started ON started.pid = pick.pid
        LEFT JOIN death ON death.patient_id = pick.pid
        """
    )
    fhir_n = con.execute("SELECT count(*) FROM inferred_registrations").fetchone()[0]

    # -- OMOP: observation periods of persons without a care site -----------------------
    con.execute(
        f"""
        INSERT INTO inferred_registrations
        WITH visits AS (
            SELECT pid, practice, count(*) AS n, max(d) AS last FROM ev
            WHERE kind = 'visit' AND practice IS NOT NULL AND pid IS NOT NULL
            GROUP BY pid, practice
        ),
        site AS (
            SELECT * FROM visits
            QUALIFY row_number() OVER (
                PARTITION BY pid ORDER BY n DESC, last DESC NULLS LAST, practice ASC) = 1
        ),
        periods AS (
            SELECT DISTINCT pid, d, d_end FROM ev
            WHERE kind = 'period' AND d IS NOT NULL AND pid IN (SELECT pid FROM eligible)
        ),
        ranked AS (
            SELECT *, row_number() OVER (PARTITION BY pid ORDER BY d DESC, d_end DESC) AS k
            FROM periods
        )
        SELECT ranked.pid, coalesce(site.practice, '{UNKNOWN_PRACTICE}'),
               CAST(ranked.d AS VARCHAR),
               -- the last period runs to death, or stays open (see the module docs)
               CAST(CASE WHEN k = 1 THEN death.died ELSE ranked.d_end END AS VARCHAR),
               'inferred'
        FROM ranked
        LEFT JOIN site ON site.pid = ranked.pid
        LEFT JOIN death ON death.patient_id = ranked.pid
        """
    )
    con.execute(
        f"""
        INSERT INTO inferred_practices
        SELECT practice, min(practice_name) FROM ev
        WHERE kind IN ('encounter', 'visit')
          AND practice IN (SELECT practice_id FROM inferred_registrations)
        GROUP BY practice
        UNION ALL
        SELECT '{UNKNOWN_PRACTICE}', '{UNKNOWN_PRACTICE_NAME}'
        WHERE '{UNKNOWN_PRACTICE}' IN (SELECT practice_id FROM inferred_registrations)
        """
    )
    rows, patients, unknown = con.execute(
        f"""
        SELECT count(*), count(DISTINCT patient_id),
               count(DISTINCT patient_id) FILTER (WHERE practice_id = '{UNKNOWN_PRACTICE}')
        FROM inferred_registrations
        """
    ).fetchone()
    practices = con.execute("SELECT count(*) FROM inferred_practices").fetchone()[0]
    omop_n = rows - fhir_n
    basis = []
    if fhir_n:
        basis.append("encounters")
    if omop_n:
        basis.append("observation periods")
    where = " and ".join(basis) or "encounters or observation periods"
    line = (
        f"{rows:,} registrations inferred from {where} for {patients:,} patients "
        f"without a recorded registration ({practices:,} "
        f"{'practice' if practices == 1 else 'practices'})"
    )
    if unknown:
        line += f"; {unknown:,} of them at the placeholder practice {UNKNOWN_PRACTICE!r}"
    line += " — registrations.source = 'inferred'; --registrations recorded to switch off"
    run.notes.insert(0, line)
    return {
        "mode": run.registrations,
        "inferred": int(rows),
        "patients": int(patients),
        "practices": int(practices),
        "unknown_practice_patients": int(unknown),
        "rule": RULES.get(run.kind),
    }
