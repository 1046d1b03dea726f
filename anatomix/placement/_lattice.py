"""An organ draw on the scoring lattice: its SDF evaluated once in its box, then moved by integer
lattice steps (every candidate translation reuses that one evaluation)."""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anatomix import relations as rel
from anatomix.graph import OrganSpec
from anatomix.shape_field import OrganField, evaluate_upsampled, rotation_matrix

__all__ = ["Lattice", "Placed", "carry", "lattice_of", "organ_lattice", "overlap_region", "pair_values",
           "tight_overlap"]


@dataclass
class Lattice:
    """An organ's SDF on the scoring lattice, in offsets from its (lattice-snapped) translation."""

    sdf: np.ndarray  # float32 (nx, ny, nz), mm
    mask: np.ndarray  # sdf <= 0
    k0: np.ndarray  # int (3,): lattice index of sdf[0,0,0] relative to the translation's index
    count: int
    centroid_off: np.ndarray  # (3,) mm, centroid relative to the translation
    tight_lo: np.ndarray  # (3,) int, mask box within sdf
    tight_hi: np.ndarray
    mask_t: np.ndarray = None  # type: ignore[assignment]  # mask over its tight box
    tight_lo_t: tuple[int, ...] = ()  # tight_lo and tight_hi as python ints
    tight_hi_t: tuple[int, ...] = ()
    outside_sdf: np.ndarray = None  # type: ignore[assignment]  # sdf outside the organ, inf inside
    # the pair values already measured from this lattice: the candidate search comes back to the
    # same translation often (a third of its checks), and the arrays never change once built
    # (not an init field: a copy or dataclasses.replace of a lattice starts with no entries)
    pairs: dict[tuple[Any, ...], tuple[Any, int, float | None]] = field(default_factory=dict, init=False,
                                                                           repr=False, compare=False)

    def __post_init__(self) -> None:
        self.mask_t = np.ascontiguousarray(self.mask[tuple(slice(int(a), int(b) + 1)
                                                           for a, b in zip(self.tight_lo, self.tight_hi))])
        self.tight_lo_t = tuple(int(v) for v in self.tight_lo)
        self.tight_hi_t = tuple(int(v) for v in self.tight_hi)
        # the surface gap of two lattices is the least sdf_a + sdf_b where both are outside:
        # with inf inside, one sum and one min over the common box (no masks per candidate)
        self.outside_sdf = np.where(self.mask, np.float32(np.inf), self.sdf).astype(np.float32, copy=False)


def organ_lattice(fld: OrganField, h: float, margin_mm: float) -> Lattice | None:
    lo, hi = fld.offset_box(margin_mm)
    k_lo = np.floor(lo / h).astype(int)
    k_hi = np.ceil(hi / h).astype(int)
    n = k_hi - k_lo + 1
    # large organs (every extent > 45 mm): evaluate at 2 h and upsample, like rendering does
    llo, lhi = fld.local_box()
    factors = np.full(3, 2 if np.min(lhi - llo) > 45.0 else 1)
    sdf = evaluate_upsampled(fld, k_lo * h, np.full(3, h), n, factors).numpy()
    mask = sdf <= 0
    if not mask.any():
        return None
    near = sdf <= margin_mm
    idx = [np.nonzero(near.any(axis=tuple(j for j in range(3) if j != d)))[0] for d in range(3)]
    sl = tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)
    return lattice_of(np.ascontiguousarray(sdf[sl]), k_lo + np.array([s.start for s in sl]), h)


def lattice_of(sdf: np.ndarray, k0: np.ndarray, h: float) -> Lattice | None:
    """The :class:`Lattice` of an SDF array whose ``[0, 0, 0]`` is lattice index ``k0`` (None: empty)."""
    mask = sdf <= 0
    nz = np.nonzero(mask)
    cnt = int(nz[0].size)
    if cnt == 0:
        return None
    cen = np.array([(nz[d].mean() + k0[d]) * h for d in range(3)])
    tlo = np.array([nz[d].min() for d in range(3)])
    thi = np.array([nz[d].max() for d in range(3)])
    return Lattice(sdf, mask, k0, cnt, cen, tlo, thi)


@dataclass
class Placed:
    info: OrganSpec
    lat: Lattice
    m: np.ndarray  # int (3,) lattice index of the translation
    params: dict[str, Any]

    def __post_init__(self) -> None:
        self.start = self.m + self.lat.k0  # lattice index of sdf[0, 0, 0]
        self.start_t = tuple(int(v) for v in self.start)
        self.end = self.start + np.asarray(self.lat.sdf.shape)
        self.tight_lo = self.start + self.lat.tight_lo
        self.tight_hi = self.start + self.lat.tight_hi
        self.tight_t = tuple(int(v) for v in self.tight_lo)
        self._centroid: dict[float, np.ndarray] = {}

    def centroid(self, h: float) -> np.ndarray:
        c = self._centroid.get(h)
        if c is None:
            c = self._centroid[h] = self.m * h + self.lat.centroid_off
        return c


def overlap_region(a_start: tuple[int, ...], a: np.ndarray, b_start: tuple[int, ...], b: np.ndarray
                    ) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Slices of ``a`` and ``b`` (lattice arrays placed at integer starts, python int tuples) over
    their common box (:func:`anatomix.relations.offset_common_box`)."""
    return rel.offset_common_box(a_start, a.shape, b_start, b.shape)


def pair_values(a_start: tuple[int, ...], la: Lattice, b_start: tuple[int, ...], lb: Lattice,
                 need_gap: bool) -> tuple[int, float]:
    """(intersection voxel count, surface gap mm) on the lattice: the values of :mod:`anatomix.relations`'
    ``offset_overlap_count`` and ``offset_surface_gap_mm`` (the gap from the lattices' ``outside_sdf``);
    the gap is ``inf`` unless needed. Remembered on ``la`` (:attr:`Lattice.pairs`)."""
    key = (a_start, b_start, id(lb))
    hit = la.pairs.get(key)
    if hit is not None and hit[0]() is lb and (hit[2] is not None or not need_gap):
        inter, gap = hit[1], hit[2]
    else:
        gap = None
        box = rel.offset_common_box(a_start, la.sdf.shape, b_start, lb.sdf.shape)
        if box is None:
            inter, gap = 0, math.inf
        else:
            inter = rel.offset_overlap_count(la.mask, a_start, lb.mask, b_start, box=box)
            if inter:
                gap = 0.0
            elif need_gap:
                gap = rel.offset_outside_gap_mm(la.outside_sdf[box[0]], lb.outside_sdf[box[1]])
        # a weak reference tells whether id(lb) is still lb (no cycle between placed lattices)
        la.pairs[key] = (weakref.ref(lb), inter, gap)
    if inter or not need_gap:
        return inter, 0.0 if inter else math.inf
    assert gap is not None
    return 0, gap


def tight_overlap(a_tight: tuple[int, ...], la: Lattice, b_tight: tuple[int, ...], lb: Lattice) -> int:
    """|a ∩ b| on the lattice of two lattices whose tight mask boxes start at ``a_tight`` /
    ``b_tight``, counted over the common part of those boxes (outside it one mask is empty): the
    value of :func:`anatomix.relations.offset_overlap_count`. Remembered on ``la``."""
    key = ("tight", a_tight, b_tight, id(lb))
    hit = la.pairs.get(key)
    if hit is not None and hit[0]() is lb:
        return hit[1]
    inter = rel.offset_overlap_count(la.mask_t, a_tight, lb.mask_t, b_tight)
    la.pairs[key] = (weakref.ref(lb), inter, None)
    return inter


def carry(p: Placed, anchor: np.ndarray, h: float) -> np.ndarray:
    """Where a placed organ says an organ of anchor ``anchor`` goes (anchor offset through its pose)."""
    rot = rotation_matrix(p.params["rotation_deg"])
    sc = np.asarray(p.params["scale"])
    return p.centroid(h) + rot @ (sc * (anchor - p.params["anchor"]))
