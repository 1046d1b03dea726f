"""The reference distributions fitted on real subjects (what cases are scored against)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from anatomix.evaluate.summary import MapSummary, Settings


def _pair_key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def _pair_name(pair: tuple[str, str]) -> str:
    return f"{pair[0]}|{pair[1]}"


@dataclass
class ReferenceModel:
    """Distributions of the real subjects that cases are scored against.

    Attributes:
        n_subjects: number of real subjects.
        organs: organs present in at least ``min_real_support`` subjects.
        presence: organ -> share of real subjects with it.
        log_volume: organ -> (mean, std) of ln(volume ml), std floored.
        offsets: pair (a, b) with a < b -> (mean (3,), regularised covariance (3,3), n subjects);
            the offset is ``centroid_b - centroid_a`` in mm.
        contact_rate: pair -> share of real subjects (with both organs) where they touch.
        majority: pairs touching in at least half of those subjects.
    """

    n_subjects: int
    organs: list[str]
    presence: dict[str, float]
    log_volume: dict[str, tuple[float, float]]
    offsets: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, int]]
    contact_rate: dict[tuple[str, str], float]
    majority: set[tuple[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {
            "n_subjects": self.n_subjects,
            "organs": self.organs,
            "presence": self.presence,
            "volume_ml_geometric_mean": {o: math.exp(m) for o, (m, _) in self.log_volume.items()},
            "log_volume_std": {o: s for o, (_, s) in self.log_volume.items()},
            "centroid_offsets_mm": {
                _pair_name(p): {"mean": m.tolist(), "cov": c.tolist(), "n": n}
                for p, (m, c, n) in sorted(self.offsets.items())
            },
            "contact_rate": {_pair_name(p): r for p, r in sorted(self.contact_rate.items())},
            "majority_contact_graph": sorted(_pair_name(p) for p in self.majority),
        }


def fit_reference(real: Sequence[MapSummary], settings: Settings = Settings()) -> ReferenceModel:
    """Fit the reference distributions on real subjects (any number >= 1; see Settings)."""
    n = len(real)
    counts: dict[str, int] = {}
    for s in real:
        for o in s.volumes_ml:
            counts[o] = counts.get(o, 0) + 1
    support = min(settings.min_real_support, n)
    organs = sorted(o for o, c in counts.items() if c >= support)
    presence = {o: counts.get(o, 0) / n for o in organs}
    log_volume: dict[str, tuple[float, float]] = {}
    for o in organs:
        lv = np.log([s.volumes_ml[o] for s in real if o in s.volumes_ml])
        sd = float(lv.std(ddof=1)) if lv.size > 1 else 0.0
        log_volume[o] = (float(lv.mean()), max(sd, settings.min_log_volume_std))
    offsets: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, int]] = {}
    contact_rate: dict[tuple[str, str], float] = {}
    for i, a in enumerate(organs):
        for b in organs[i + 1:]:
            both = [s for s in real if a in s.volumes_ml and b in s.volumes_ml]
            if len(both) < support:
                continue
            d = np.array([np.subtract(s.centroids_mm[b], s.centroids_mm[a]) for s in both])
            mean = d.mean(axis=0)
            cov = np.cov(d, rowvar=False, ddof=1) if len(both) > 1 else np.zeros((3, 3))
            iso = np.trace(cov) / 3.0
            reg = (1 - settings.shrinkage) * cov + settings.shrinkage * iso * np.eye(3)
            reg = reg + settings.min_std_mm ** 2 * np.eye(3)
            offsets[(a, b)] = (mean, reg, len(both))
            contact_rate[(a, b)] = sum(frozenset((a, b)) in s.contacts for s in both) / len(both)
    majority = {p for p, r in contact_rate.items() if r >= 0.5}
    return ReferenceModel(n, organs, presence, log_volume, offsets, contact_rate, majority)
