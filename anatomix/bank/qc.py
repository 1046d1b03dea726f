"""Quality flags of ingested shapes (tiny, fragmented, wrong side) and the bank summary table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from anatomix.bank.geometry import _Subject
    from anatomix.bank.store import ShapeBank


FRAGMENTED_FRACTION = 0.05
TINY_FRACTION_OF_TYPICAL = 0.1
TINY_ML = 0.5

# Typical adult volumes (ml), for the `tiny` QC flag (< 10% of typical, or < 0.5 ml otherwise).
TYPICAL_VOLUME_ML: Mapping[str, float] = {
    "liver": 1500.0, "spleen": 200.0, "kidney_left": 150.0, "kidney_right": 150.0,
    "gallbladder": 30.0, "stomach": 300.0, "pancreas": 80.0, "duodenum": 60.0,
    "esophagus": 25.0, "aorta": 100.0, "inferior_vena_cava": 60.0,
    "portal_splenic_vein": 25.0, "adrenal_gland_left": 5.0, "adrenal_gland_right": 5.0,
    "adrenal_gland": 10.0, "small_bowel": 700.0, "colon": 600.0, "urinary_bladder": 150.0,
}



#: a volume this many times the typical one is implausible for an adult organ (splenomegaly stays below)
OVERSIZED_FACTOR = 8.0


def implausible_volumes(volumes_ml: Mapping[str, float]) -> list[str]:
    """``organ V ml (typical T)`` for each organ of one subject far from an adult's size: below
    the ``tiny`` flag's bound or above OVERSIZED_FACTOR times the typical volume. Several at once
    mean a wrong label table far more often than anatomy does."""
    out = []
    for organ, vol in sorted(volumes_ml.items()):
        typical = TYPICAL_VOLUME_ML.get(organ)
        if typical is not None and not (TINY_FRACTION_OF_TYPICAL * typical <= vol <= OVERSIZED_FACTOR * typical):
            out.append(f"{organ} {vol:.0f} ml (typical {typical:g})")
    return out


def bank_table(bank: ShapeBank) -> Any:
    """A rich Table: one row per organ, one column per subject (volume ml + flags), a legend."""
    from rich.table import Table

    m = bank.manifest
    t = Table(title=f"shape bank {bank.root.name}: {len(bank.subjects)} subjects, "
              f"{len(bank.organs)} organs, {len(m.shapes)} shapes, spacing "
              f"{' x '.join(f'{s:g}' for s in m.spacing_mm)} mm",
              caption="ml = volume of the kept component; T = truncated by the field of view; "
              "t = tiny; f = fragmented; w = wrong side; ~ = approximate body frame. "
              f"content hash {m.content_hash[:16]}")
    t.add_column("organ")
    approx = {s.subject_id for s in m.subjects if not s.frame_exact}
    for s in m.subjects:
        t.add_column(s.subject_id + ("~" if s.subject_id in approx else ""), justify="right")
    t.add_column("n", justify="right")
    code = {"tiny": "t", "fragmented": "f", "wrong_side": "w"}
    for organ in bank.organs:
        by = {r.subject_id: r for r in bank.shapes(organ)}
        row = [organ]
        for s in m.subjects:
            r = by.get(s.subject_id)
            if r is None:
                row.append("-")
                continue
            flags = ("T" if r.truncated else "") + "".join(code.get(f, "?") for f in r.qc_flags)
            cell = f"{r.volume_ml:.1f}" + (f" [yellow]{flags}[/]" if flags else "")
            row.append(cell)
        row.append(str(len(by)))
        t.add_row(*row)
    return t


def _qc(sub: _Subject, origin: np.ndarray, reference: str, voxel_ml: float
        ) -> dict[str, list[str]]:
    from anatomix.labels import mirror_organ, organ_side

    by = {s.organ: s for s in sub.shapes}
    flags: dict[str, list[str]] = {}
    for s in sub.shapes:
        f = []
        vol = s.n_vox * voxel_ml
        typical = TYPICAL_VOLUME_ML.get(s.organ)
        if vol < TINY_ML or (typical is not None and vol < TINY_FRACTION_OF_TYPICAL * typical):
            f.append("tiny")
        if s.dropped > FRAGMENTED_FRACTION:
            f.append("fragmented")
        side = organ_side(s.organ)
        if side is not None:
            x = s.centroid_world[0] - origin[0]
            wrong = False
            if reference == "kidney_midpoint" and abs(x) > 1e-6:
                wrong = (x > 0) if side == "left" else (x < 0)
            mate = by.get(mirror_organ(s.organ) or "")
            if mate is not None:
                dx = s.centroid_world[0] - mate.centroid_world[0]
                wrong = wrong or ((dx > 0) if side == "left" else (dx < 0))
            if wrong:
                f.append("wrong_side")
        flags[s.organ] = f
    return flags

