"""Asthma programme: pophealth's LADS-style decision support and ISAC severe-asthma case finding.

Rules and thresholds: :mod:`.config` and :mod:`.rules`; documentation for clinicians in
docs/programmes/asthma.md. The risk tier is pophealth's own scheme, not LADS's.
"""

from pophealth.programmes.asthma.codes import CURATED_NAMES
from pophealth.programmes.asthma.programme import PROGRAMME, AsthmaProgramme, evaluate

#: The code-list names the programme reads (:func:`pophealth.programmes.codelist_names`).
CODELIST_NAMES = frozenset(n for names in CURATED_NAMES.values() for n in names)

__all__ = ["CODELIST_NAMES", "PROGRAMME", "AsthmaProgramme", "evaluate"]
