"""Keyed pseudonymisation of patient identifiers (HMAC-SHA256).

The key belongs to the data controller: it is read from ``--key-file`` or the
``POPHEALTH_PSEUDONYM_KEY`` environment variable, never generated or stored by
pophealth. The same key and identifier always give the same ``patient_id``, so
separate extracts link; without the key the mapping cannot be reversed or rebuilt.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

ENV_VAR = "POPHEALTH_PSEUDONYM_KEY"
MIN_KEY_BYTES = 16


class PseudonymKeyError(ValueError):
    """No usable pseudonymisation key."""


def load_key(key_file: str | os.PathLike | None = None) -> bytes:
    """The pseudonymisation key from ``key_file`` or ``$POPHEALTH_PSEUDONYM_KEY``.

    Refuses to run without one (there is no default key: a default would make
    every patient_id reversible by anyone with pophealth).
    """
    if key_file is not None:
        path = Path(key_file)
        try:
            key = path.read_bytes().strip()
        except OSError as exc:
            raise PseudonymKeyError(
                f"cannot read the pseudonymisation key file {path}: {exc.strerror or exc}"
            ) from exc
        where = f"key file {path}"
    else:
        text = os.environ.get(ENV_VAR, "")
        key = text.strip().encode()
        where = f"${ENV_VAR}"
        if not key:
            raise PseudonymKeyError(
                "a pseudonymisation key is required: pass --key-file FILE or set "
                f"{ENV_VAR}. patient_id is an HMAC-SHA256 of the NHS number (or source "
                "identifier) under this key; keep the key secret and use the same key for "
                "every extract that must link."
            )
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(
            f"the pseudonymisation key in {where} is {len(key)} bytes; use at least "
            f"{MIN_KEY_BYTES} random bytes (e.g. `openssl rand -hex 32 > key.txt`)"
        )
    return key


class Pseudonymiser:
    """Derives pseudonymous ids with HMAC-SHA256 under the controller's key."""

    def __init__(self, key: bytes):
        if not key:
            raise PseudonymKeyError("empty pseudonymisation key")
        self._key = key
        self._cache: dict[str, str] = {}
        self._refs: dict[str, str] = {}

    def __call__(self, namespace: str, value: str) -> str:
        """``patient_id`` for ``value`` in ``namespace`` (e.g. ``nhs``, ``fhir``, ``omop``)."""
        text = f"{namespace}:{value}"
        hit = self._cache.get(text)
        if hit is None:
            hit = hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()[:32]
            if len(self._cache) < 1_000_000:
                self._cache[text] = hit
        return hit

    def nhs(self, nhs_number: str) -> str:
        return self("nhs", normalise_nhs_number(nhs_number))

    def key_of(self, reference_key: str) -> str:
        """Hash of a reference key, so that temporary index files hold no raw identifiers."""
        hit = self._refs.get(reference_key)
        if hit is None:
            hit = hmac.new(self._key, b"ref:" + reference_key.encode(), hashlib.sha256)
            hit = hit.hexdigest()[:32]
            if len(self._refs) >= 1_000_000:
                self._refs.clear()
            self._refs[reference_key] = hit
        return hit


def normalise_nhs_number(value: str) -> str:
    """Digits only (``943 476 5919`` and ``9434765919`` are the same number)."""
    return "".join(ch for ch in str(value) if ch.isdigit())
