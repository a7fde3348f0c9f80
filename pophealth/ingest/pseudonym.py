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
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

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


#: A file is taken to hold NHS numbers when at least this share of its distinct 10-digit
#: ids pass the modulus-11 check (flat ``patient_id``, OMOP ``person_source_value``).
#: Random 10-digit ids pass about 1 time in 11 (9%): with 10 such ids, half or more pass
#: about once in a thousand files.
NHS_NUMBER_SHARE = 0.5

#: Weights of the first nine digits of an NHS number in its modulus-11 check.
_NHS_WEIGHTS = np.arange(10, 1, -1, dtype=np.int64)


def nhs_number_valid(values: Iterable[object]) -> np.ndarray:
    """True where a value is a valid NHS number, vectorised.

    The NHS Data Dictionary's NHS NUMBER rule: ten digits (spaces or hyphens between the
    3-3-4 groups allowed), the tenth a modulus-11 check digit — multiply the first nine
    by 10, 9, … 2, add them up, take the remainder on dividing by 11 and subtract it from
    11; 11 gives check digit 0 and 10 means no valid number has those nine digits. About
    one random 10-digit string in 11 passes (10/11 × 1/10), so one id alone says little;
    a file most of whose 10-digit ids pass is a file of NHS numbers.

    One digit ten times (``0000000000``, ``9999999999``) is refused too: every such string
    passes the check (the nine weights add up to 54, and 11 − (54 × d mod 11) is d again),
    but it is what a system writes for an unknown number, not anyone's — taken as a
    number, it would merge the records of everyone it was written for into one patient.
    """
    text = pd.Series(values, dtype="object").astype("string").str.strip()
    text = text.str.replace(r"[ \-]", "", regex=True)
    ten = text.str.fullmatch(r"[0-9]{10}").fillna(False).to_numpy(bool)
    out = np.zeros(len(text), dtype=bool)
    if not ten.any():
        return out
    joined = "".join(text[ten].tolist()).encode("ascii")
    digits = (np.frombuffer(joined, dtype=np.uint8).reshape(-1, 10) - 48).astype(np.int64)
    check = 11 - (digits[:, :9] @ _NHS_WEIGHTS) % 11
    check[check == 11] = 0
    repeated = (digits == digits[:, :1]).all(axis=1)
    out[ten] = (check != 10) & (check == digits[:, 9]) & ~repeated
    return out


_SEPARATED_TEN = re.compile(r"[0-9 \-]+")


def nhs_number_problem(value: object) -> str | None:
    """Why ``value`` is not a valid NHS number (None when it is one), for one identifier.

    The rule of :func:`nhs_number_valid` (ten digits, spaces or hyphens between them
    allowed, not one digit ten times, a modulus-11 check digit), with the reason in words
    for the quarantine report.
    """
    text = str(value).strip() if value is not None else ""
    digits = text.replace(" ", "").replace("-", "")
    if not (_SEPARATED_TEN.fullmatch(text) and len(digits) == 10 and digits.isascii()):
        return (
            "not a valid NHS number: 10 digits expected (spaces or hyphens between them "
            f"allowed), got {text!r}"
        )
    if len(set(digits)) == 1:
        return (
            f"not a valid NHS number: {digits} is one digit ten times, a placeholder for an "
            "unknown number (it passes the modulus-11 check, as every such number does)"
        )
    check = 11 - sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True)) % 11
    if check == 10:
        return (
            f"not a valid NHS number: no valid NHS number starts {digits[:9]} (its modulus-11 "
            "check digit would be 10)"
        )
    if check % 11 != int(digits[9]):
        return (
            f"not a valid NHS number: the modulus-11 check digit of {digits[:9]} is "
            f"{check % 11}, not {digits[9]}"
        )
    return None


def ten_digit(values: Iterable[object]) -> np.ndarray:
    """True where a value is ten digits (as :func:`nhs_number_valid` reads it)."""
    text = pd.Series(values, dtype="object").astype("string").str.strip()
    text = text.str.replace(r"[ \-]", "", regex=True)
    return text.str.fullmatch(r"[0-9]{10}").fillna(False).to_numpy(bool)
