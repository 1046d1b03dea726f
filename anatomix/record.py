"""Case records: what pins a case to its inputs (leaf module: imports nothing of the pipeline).

Every case record (``records/<case>.json``) and every run file carries :class:`Pins`: the
anatomix version and content hashes of the organ graph, the shape bank and the synthesis config.
A record replays its case (:func:`anatomix.replay.replay_record`) when the bank it names has the
pinned content; a resumed run refuses inputs whose pins changed, and says which.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["RECORD_FORMAT", "Pins", "content_sha256", "pin_changes"]

RECORD_FORMAT = 1


def content_sha256(data: Any) -> str:
    """SHA-256 of JSON-able data in a canonical form (sorted keys, no whitespace)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Pins(BaseModel):
    """What a case depends on besides (seed, index): code version and input contents."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    anatomix_version: str
    config_sha256: str
    graph_sha256: str | None = None  # anatomy cases only
    bank_sha256: str | None = None


def _short(value: str | None) -> str | None:
    """A hash shortened for messages (other values as they are)."""
    return value[:12] if isinstance(value, str) and len(value) == 64 else value


def pin_changes(old: Pins, new: Pins) -> list[str]:
    """Human-readable differences between two pins (empty: the same inputs)."""
    names = {"anatomix_version": "anatomix version", "config_sha256": "synthesis config",
             "graph_sha256": "organ graph", "bank_sha256": "shape bank"}
    out = []
    for key, what in names.items():
        a, b = getattr(old, key), getattr(new, key)
        if a != b:
            out.append(f"{what} ({_short(a)} -> {_short(b)})")
    return out
