"""Asthma programme: pophealth's LADS-style decision support and ISAC severe-asthma case finding.

Rules and thresholds: :mod:`.config` and :mod:`.rules`; documentation for clinicians in
docs/programmes/asthma.md. The risk tier is pophealth's own scheme, not LADS's.
"""

from pophealth.programmes.asthma.programme import PROGRAMME, AsthmaProgramme, evaluate

__all__ = ["PROGRAMME", "AsthmaProgramme", "evaluate"]
