"""How spatial relations between structures are MEASURED (the single owner of these definitions).

Graph learning and checking, placement's constraint report and ``anatomix evaluate`` all call
these functions, so "touching", "overlapping" and "left of" mean the same thing everywhere.

Conventions (see DESIGN.md):

- Arrays are (x, y, z) in RAS+: world x grows toward the subject's Right, y Anterior, z Superior.
  Array axis k increases along world +k, so a world position is ``origin_mm + index * spacing_mm``.
- Masks are boolean arrays; SDFs are float arrays in mm, negative inside, positive outside. Two
  structures are compared on ONE common grid (same shape, same ``spacing_mm``).
- Wherever a function takes "a mask or an SDF", a boolean array is a mask and any other dtype is
  an SDF (inside = ``sdf <= 0``).

Definitions:

- ``overlap_fraction(a, b)`` = |a ∩ b| / min(|a|, |b|)  (0 when either is empty).
- ``inside_fraction(a, b)`` = |a ∩ b| / |a|: the share of ``a`` lying inside ``b``.
- ``groove_share(a, b, spacing, radius_mm)``: the share of ``a`` lying inside the morphological
  closing of ``b`` by a ball of ``radius_mm`` (how far ``a`` runs in a groove of ``b``; 0 for
  structures that meet only at a convex surface).
- ``surface_gap_mm(a, b, spacing)``: the distance in mm between the two structures' surfaces,
  0 when they touch or overlap. From masks, voxels are boxes: two voxels that share a face, an
  edge or a corner touch (gap 0); otherwise the gap is the distance between the voxel boxes
  (for two voxels ``d`` indices apart along an axis of spacing ``s``: ``(d - 1) * s`` per axis,
  combined Euclidean). From SDFs, the gap is ``min(sdf_a + sdf_b)`` over grid points outside
  both (exact on the segment joining the closest points; the grid makes it at most about one
  voxel larger), and 0 as soon as a grid point is inside both.
- ``direction_margin_mm(ca, cb, direction)``: by how many mm centroid ``a`` lies in
  ``direction`` of centroid ``b`` (negative when it lies the other way). With the contract's
  conventions, a relation ``a <direction> b`` with margin ``m`` holds iff the value is ``> m``:

  ============== ======================= ==========================
  direction      holds iff               value
  ============== ======================= ==========================
  left_of        a.x < b.x - m           b.x - a.x
  right_of       a.x > b.x + m           a.x - b.x
  above          a.z > b.z + m           a.z - b.z
  below          a.z < b.z - m           b.z - a.z
  anterior_to    a.y > b.y + m           a.y - b.y
  posterior_to   a.y < b.y - m           b.y - a.y
  ============== ======================= ==========================

- ``contacts(label_map, spacing, tolerance_mm)``: label pairs whose surface gap (mask
  definition above) is at most ``tolerance_mm``. Cost: one Euclidean distance transform per label
  on that label's bounding box grown by the tolerance, not on the whole volume.
"""

# size: the single owner of every relation measure (overlap, inside, gap, direction, contacts, on
# one grid and at integer offsets); splitting it would split that ownership.

from __future__ import annotations

from math import ceil, isfinite
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "DIRECTIONS",
    "OPPOSITE_DIRECTION",
    "RELATION_TYPES",
    "as_mask",
    "bounding_boxes",
    "centroid_mm",
    "centroids_mm",
    "contact_gaps",
    "contacts",
    "direction_holds",
    "direction_margin_mm",
    "inside_fraction",
    "offset_common_box",
    "offset_overlap_count",
    "offset_relation_value",
    "offset_outside_gap_mm",
    "offset_surface_gap_mm",
    "overlap_fraction",
    "relation_holds",
    "relation_value",
    "surface_gap_mm",
    "volume_ml",
    "volumes_ml",
]

#: Relation types of an organ graph (graph.py); ``relation_holds`` knows how each is judged.
RELATION_TYPES: tuple[str, ...] = ("contact", "avoid", "inside", "direction", "attached_to")

#: Direction names and the (world axis, sign) each one measures: value = sign * (a[axis] - b[axis]).
DIRECTIONS: Mapping[str, tuple[int, int]] = {
    "left_of": (0, -1),
    "right_of": (0, +1),
    "posterior_to": (1, -1),
    "anterior_to": (1, +1),
    "below": (2, -1),
    "above": (2, +1),
}

OPPOSITE_DIRECTION: Mapping[str, str] = {
    "left_of": "right_of",
    "right_of": "left_of",
    "posterior_to": "anterior_to",
    "anterior_to": "posterior_to",
    "below": "above",
    "above": "below",
}


def _spacing(spacing_mm: Sequence[float] | np.ndarray | float, ndim: int = 3) -> np.ndarray:
    s = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (ndim,)).copy()
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"spacing_mm must be positive and finite, got {spacing_mm!r}")
    return s


def as_mask(a: np.ndarray) -> np.ndarray:
    """A boolean mask from a mask (returned as is) or an SDF (``sdf <= 0``)."""
    a = np.asarray(a)
    if a.dtype == np.bool_:
        return a
    return a <= 0


def _same_grid(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"the two structures must be sampled on one common grid; got shapes {a.shape} and {b.shape}"
        )


# ---- sizes and positions ---------------------------------------------------------------------


def volume_ml(mask_or_sdf: np.ndarray, spacing_mm: Sequence[float] | np.ndarray | float) -> float:
    """Volume in millilitres (1 ml = 1000 mm^3) of a mask or an SDF's inside."""
    s = _spacing(spacing_mm, np.ndim(mask_or_sdf))
    return float(np.count_nonzero(as_mask(mask_or_sdf)) * float(np.prod(s)) / 1000.0)


def centroid_mm(
    mask_or_sdf: np.ndarray,
    spacing_mm: Sequence[float] | np.ndarray | float,
    origin_mm: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Centroid (3,) in world mm: ``origin_mm + mean voxel index * spacing_mm``.

    Raises:
        ValueError: the structure is empty (no centroid).
    """
    m = as_mask(mask_or_sdf)
    s = _spacing(spacing_mm, m.ndim)
    idx = np.nonzero(m)
    if idx[0].size == 0:
        raise ValueError("empty structure: no voxel inside, no centroid")
    mean = np.array([i.mean() for i in idx], dtype=np.float64)
    return np.asarray(origin_mm, dtype=np.float64) + mean * s


def bounding_boxes(label_map: np.ndarray, labels: Iterable[int] | None = None) -> dict[int, tuple[slice, ...]]:
    """Tight bounding box (tuple of slices) of each non-zero label present in ``label_map``."""
    lm = np.asarray(label_map)
    if not np.issubdtype(lm.dtype, np.integer):
        if not np.all(np.equal(np.mod(lm, 1), 0)):
            raise ValueError("label_map must hold integer label values")
        lm = lm.astype(np.int64)
    if lm.size and lm.min() < 0:
        raise ValueError("label_map must not hold negative label values")
    objs = ndimage.find_objects(lm)
    wanted = None if labels is None else {int(v) for v in labels}
    out: dict[int, tuple[slice, ...]] = {}
    for i, sl in enumerate(objs):
        if sl is None:
            continue
        v = i + 1
        if wanted is None or v in wanted:
            out[v] = sl
    return out


def volumes_ml(label_map: np.ndarray, spacing_mm: Sequence[float] | np.ndarray | float) -> dict[int, float]:
    """Volume in ml of every non-zero label present."""
    lm = np.asarray(label_map)
    s = _spacing(spacing_mm, lm.ndim)
    counts = np.bincount(lm.ravel().astype(np.int64))
    vox_ml = float(np.prod(s)) / 1000.0
    return {int(v): float(c) * vox_ml for v, c in enumerate(counts) if v > 0 and c > 0}


def centroids_mm(
    label_map: np.ndarray,
    spacing_mm: Sequence[float] | np.ndarray | float,
    origin_mm: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
    labels: Iterable[int] | None = None,
) -> dict[int, np.ndarray]:
    """Centroid (3,) in world mm of every non-zero label present (or of ``labels``)."""
    lm = np.asarray(label_map)
    s = _spacing(spacing_mm, lm.ndim)
    o = np.asarray(origin_mm, dtype=np.float64)
    out: dict[int, np.ndarray] = {}
    for v, sl in bounding_boxes(lm, labels).items():
        idx = np.nonzero(lm[sl] == v)
        mean = np.array([i.mean() + sli.start for i, sli in zip(idx, sl)], dtype=np.float64)
        out[v] = o + mean * s
    return out


# ---- pairwise measurements --------------------------------------------------------------------


def overlap_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """|a ∩ b| / min(|a|, |b|) for two masks (or SDFs) on one grid; 0 when either is empty."""
    ma, mb = as_mask(a), as_mask(b)
    _same_grid(ma, mb)
    na, nb = np.count_nonzero(ma), np.count_nonzero(mb)
    if na == 0 or nb == 0:
        return 0.0
    return float(np.count_nonzero(ma & mb)) / float(min(na, nb))


def inside_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """|a ∩ b| / |a|: the share of ``a`` inside ``b`` (0 when ``a`` is empty)."""
    ma, mb = as_mask(a), as_mask(b)
    _same_grid(ma, mb)
    na = np.count_nonzero(ma)
    if na == 0:
        return 0.0
    return float(np.count_nonzero(ma & mb)) / float(na)


def groove_share(
    a: np.ndarray, b: np.ndarray, spacing_mm: Sequence[float] | np.ndarray | float, radius_mm: float
) -> float:
    """Share of ``a`` inside ``b``'s closing by a ball of ``radius_mm``: a dilation then an erosion,
    each one Euclidean distance transform. ``b`` must lie at least ``radius_mm`` inside the array
    edges wherever its closing can reach ``a``; 0 when ``a`` is empty."""
    ma, mb = as_mask(a), as_mask(b)
    _same_grid(ma, mb)
    na = np.count_nonzero(ma)
    if na == 0 or not mb.any():
        return 0.0
    sp = _spacing(spacing_mm, ma.ndim)
    dilated = ndimage.distance_transform_edt(~mb, sampling=sp) <= radius_mm
    closed = ndimage.distance_transform_edt(dilated, sampling=sp) > radius_mm
    return float(np.count_nonzero(closed & ma)) / float(na)


def _box_gap_from(
    dist_source: np.ndarray, target: np.ndarray, s: np.ndarray
) -> float:
    """Gap (mm) between the voxel boxes of ``dist_source`` (mask) and ``target`` (mask), same crop.

    Uses the exact Euclidean distance transform to find, for each target voxel, the nearest
    source voxel centre, then measures the box-to-box distance of that pair.
    """
    if not dist_source.any() or not target.any():
        return float("inf")
    if (dist_source & target).any():
        return 0.0
    _, ind = ndimage.distance_transform_edt(~dist_source, sampling=s, return_indices=True)
    tidx = np.nonzero(target)
    gaps2 = np.zeros(tidx[0].size, dtype=np.float64)
    for k in range(dist_source.ndim):
        d = np.abs(ind[k][tidx] - tidx[k]).astype(np.float64)
        gaps2 += (np.maximum(d - 1.0, 0.0) * s[k]) ** 2
    return float(np.sqrt(gaps2.min()))


def _union_crop(ma: np.ndarray, mb: np.ndarray) -> tuple[slice, ...]:
    u = ma | mb
    idx = np.nonzero(u)
    return tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)


def surface_gap_mm(a: np.ndarray, b: np.ndarray, spacing_mm: Sequence[float] | np.ndarray | float) -> float:
    """Distance in mm between the surfaces of two structures on one grid; 0 when touching/overlapping.

    Args:
        a, b: boolean masks, or float SDFs in mm (negative inside), shape (X, Y, Z), same grid.
            If either is boolean both are used as masks. SDFs must be valid (roughly distances)
            in the region between the two structures; a truncated SDF overestimates the gap.
        spacing_mm: voxel spacing (3,) or a scalar.

    Returns:
        The gap in mm (>= 0); ``inf`` when either structure is empty.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    _same_grid(a, b)
    s = _spacing(spacing_mm, a.ndim)
    if a.dtype == np.bool_ or b.dtype == np.bool_:
        ma, mb = as_mask(a), as_mask(b)
        if not ma.any() or not mb.any():
            return float("inf")
        sl = _union_crop(ma, mb)
        ma, mb = ma[sl], mb[sl]
        # distance from the smaller structure: fewer target voxels to scan
        if np.count_nonzero(ma) > np.count_nonzero(mb):
            return _box_gap_from(ma, mb, s)
        return _box_gap_from(mb, ma, s)
    fa = a.astype(np.float64, copy=False)
    fb = b.astype(np.float64, copy=False)
    ina, inb = fa <= 0, fb <= 0
    if not ina.any() or not inb.any():
        return float("inf")
    if (ina & inb).any():
        return 0.0
    outside = ~ina & ~inb
    if not outside.any():  # every point is inside exactly one: they touch
        return 0.0
    return float(max(0.0, np.min((fa + fb)[outside])))


# ---- structures stored as boxes at integer offsets on one lattice ---------------------------
# (placement keeps each organ as an array over its own box placed at an integer lattice index;
# graph learning keeps each bank shape as a crop of its subject's grid). Outside its box a
# structure is absent (mask False, SDF positive); the values equal those of the functions above
# applied to both arrays pasted into one grid covering both boxes.


def offset_common_box(
    a_start: tuple[int, ...], a_shape: tuple[int, ...], b_start: tuple[int, ...], b_shape: tuple[int, ...]
) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Slices of ``a`` and ``b`` (arrays whose element [0, 0, 0] lies at grid indices ``a_start`` /
    ``b_start``, python ints) over their common box; None when the boxes do not meet."""
    ax, ay, az = a_start
    bx, by, bz = b_start
    x0, y0, z0 = max(ax, bx), max(ay, by), max(az, bz)
    x1 = min(ax + a_shape[0], bx + b_shape[0])
    y1 = min(ay + a_shape[1], by + b_shape[1])
    z1 = min(az + a_shape[2], bz + b_shape[2])
    if x1 <= x0 or y1 <= y0 or z1 <= z0:
        return None
    return ((slice(x0 - ax, x1 - ax), slice(y0 - ay, y1 - ay), slice(z0 - az, z1 - az)),
            (slice(x0 - bx, x1 - bx), slice(y0 - by, y1 - by), slice(z0 - bz, z1 - bz)))


def offset_overlap_count(
    a: np.ndarray, a_start: tuple[int, ...], b: np.ndarray, b_start: tuple[int, ...],
    box: tuple[tuple[slice, ...], tuple[slice, ...]] | None = None,
) -> int:
    """|a ∩ b| (voxels) of two masks (or SDFs) placed at integer offsets on one grid.

    ``box``: the result of :func:`offset_common_box` when the caller has it already.
    ``overlap_fraction`` is this count over ``min(|a|, |b|)``, ``inside_fraction`` over ``|a|``.
    """
    if box is None:
        box = offset_common_box(a_start, a.shape, b_start, b.shape)
    if box is None:
        return 0
    return int(np.count_nonzero(as_mask(a[box[0]]) & as_mask(b[box[1]])))


def offset_surface_gap_mm(
    sdf_a: np.ndarray, a_start: tuple[int, ...], sdf_b: np.ndarray, b_start: tuple[int, ...],
    masks: tuple[np.ndarray, np.ndarray] | None = None,
    box: tuple[tuple[slice, ...], tuple[slice, ...]] | None = None,
) -> float:
    """:func:`surface_gap_mm` (SDF definition) of two SDFs placed at integer offsets on one grid.

    Measured on the common box (outside it at least one SDF is unknown, hence taken as far
    outside); ``inf`` when the boxes do not meet. ``masks``: ``(sdf_a <= 0, sdf_b <= 0)`` over
    the whole arrays when the caller has them already (saves two comparisons).
    """
    if box is None:
        box = offset_common_box(a_start, sdf_a.shape, b_start, sdf_b.shape)
    if box is None:
        return float("inf")
    sa, sb = box
    if masks is None:
        ma, mb = sdf_a[sa] <= 0, sdf_b[sb] <= 0
    else:
        ma, mb = masks[0][sa], masks[1][sb]
    if (ma & mb).any():
        return 0.0
    inf = np.float32(np.inf)
    return offset_outside_gap_mm(np.where(ma, inf, sdf_a[sa]), np.where(mb, inf, sdf_b[sb]))


def offset_outside_gap_mm(outside_a: np.ndarray, outside_b: np.ndarray) -> float:
    """The surface gap (mm) of two organs that do not overlap, from their SDFs over one common box
    with ``+inf`` inside each organ: the least ``sdf_a + sdf_b`` over the voxels outside both, at
    least 0; 0 when no voxel is outside both. (:func:`offset_surface_gap_mm` after its overlap test;
    placement keeps such arrays per organ, so each of its checks is one sum and one min.)
    """
    least = float((outside_a + outside_b).min())
    return max(0.0, least) if isfinite(least) else 0.0


def offset_relation_value(
    kind: str, a: np.ndarray, a_start: tuple[int, ...], b: np.ndarray, b_start: tuple[int, ...],
    masks: tuple[np.ndarray, np.ndarray] | None = None, counts: tuple[int, int] | None = None,
) -> float:
    """The value of an ``avoid`` (overlap fraction), ``inside`` (inside fraction of ``a`` in ``b``)
    or ``contact`` (surface gap, mm) relation between two SDFs placed at integer offsets on one grid.

    ``masks``: ``(a <= 0, b <= 0)`` over the whole arrays; ``counts``: their voxel counts (both
    computed when not given).
    """
    ma, mb = masks if masks is not None else (as_mask(a), as_mask(b))
    na, nb = counts if counts is not None else (int(np.count_nonzero(ma)), int(np.count_nonzero(mb)))
    box = offset_common_box(a_start, a.shape, b_start, b.shape)
    if kind == "contact":
        return offset_surface_gap_mm(a, a_start, b, b_start, masks=(ma, mb), box=box)
    inter = offset_overlap_count(ma, a_start, mb, b_start, box=box) if box is not None else 0
    if kind == "avoid":
        return inter / min(na, nb) if na and nb else 0.0
    if kind == "inside":
        return inter / na if na else 0.0
    raise ValueError(f"offset_relation_value: expected kind avoid, inside or contact; found {kind!r}")


def direction_margin_mm(
    centroid_a: Sequence[float] | np.ndarray, centroid_b: Sequence[float] | np.ndarray, direction: str
) -> float:
    """By how many mm ``a`` lies in ``direction`` of ``b`` (centroids in RAS mm; > 0: it does).

    ``a left_of b`` with margin ``m`` holds iff ``direction_margin_mm(a, b, "left_of") > m``.

    Raises:
        ValueError: unknown direction (the message lists the directions).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; expected one of {', '.join(DIRECTIONS)}")
    axis, sign = DIRECTIONS[direction]
    ca = np.asarray(centroid_a, dtype=np.float64)
    cb = np.asarray(centroid_b, dtype=np.float64)
    return float(sign * (ca[axis] - cb[axis]))


def direction_holds(
    centroid_a: Sequence[float] | np.ndarray, centroid_b: Sequence[float] | np.ndarray, direction: str,
    margin_mm: float = 0.0
) -> bool:
    """Whether ``a <direction> b`` holds with ``margin_mm`` (strict inequality, contract)."""
    return direction_margin_mm(centroid_a, centroid_b, direction) > margin_mm


def relation_value(
    kind: str, a: np.ndarray, b: np.ndarray, spacing_mm: Sequence[float] | np.ndarray | float,
    direction: str | None = None,
    centroids: tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray] | None = None,
) -> float:
    """The value of an ``avoid``, ``inside``, ``contact`` or ``direction`` relation between two
    structures on one grid (masks or SDFs): overlap fraction, inside fraction of ``a`` in ``b``,
    surface gap (mm), or direction margin (mm) on ``centroids`` (default: those of ``a`` and ``b``)."""
    if kind == "avoid":
        return overlap_fraction(a, b)
    if kind == "inside":
        return inside_fraction(a, b)
    if kind == "contact":
        return surface_gap_mm(a, b, spacing_mm)
    if kind == "direction":
        ca, cb = centroids if centroids is not None else (centroid_mm(a, spacing_mm), centroid_mm(b, spacing_mm))
        return direction_margin_mm(ca, cb, direction or "")
    raise ValueError(f"relation_value: expected kind avoid, inside, contact or direction; found {kind!r}")


def relation_holds(kind: str, value: float, tolerance: float = 0.0, margin_mm: float = 0.0) -> bool:
    """Judge a measured value against a relation of type ``kind``.

    - ``contact``: value = surface gap (mm); holds iff ``value <= tolerance`` (mm).
    - ``avoid``: value = overlap fraction; holds iff ``value <= tolerance`` (fraction).
    - ``inside``: value = inside fraction of a in b; holds iff ``value >= 1 - tolerance``.
    - ``direction``: value = direction margin (mm); holds iff ``value > margin_mm``.
    - ``attached_to``: a placement parent, not a geometric test; always holds.
    """
    if kind == "contact":
        return bool(value <= tolerance)
    if kind == "avoid":
        return bool(value <= tolerance)
    if kind == "inside":
        return bool(value >= 1.0 - tolerance)
    if kind == "direction":
        return bool(value > margin_mm)
    if kind == "attached_to":
        return True
    raise ValueError(f"unknown relation type {kind!r}; expected one of {', '.join(RELATION_TYPES)}")


# ---- whole label maps -------------------------------------------------------------------------


def contact_gaps(
    label_map: np.ndarray,
    spacing_mm: Sequence[float] | np.ndarray | float,
    max_gap_mm: float = 0.0,
    labels: Iterable[int] | None = None,
) -> dict[frozenset[int], float]:
    """Surface gap (mm, mask definition) of every label pair closer than ``max_gap_mm``.

    Each label's bounding box is grown by ``max_gap_mm`` (plus one voxel) and the distance
    transform is computed in that crop only, so the cost follows the organs' sizes, not the
    volume's.

    Args:
        label_map: integer labels (X, Y, Z), 0 = background.
        spacing_mm: voxel spacing (3,) or a scalar.
        max_gap_mm: largest gap reported (>= 0).
        labels: restrict to these label values (default: all present).

    Returns:
        ``{frozenset({a, b}): gap_mm}`` for pairs with gap <= ``max_gap_mm``.
    """
    if max_gap_mm < 0:
        raise ValueError(f"max_gap_mm must be >= 0, got {max_gap_mm}")
    lm = np.asarray(label_map)
    s = _spacing(spacing_mm, lm.ndim)
    boxes = bounding_boxes(lm, labels)
    wanted = set(boxes)
    grow = [int(ceil(max_gap_mm / sk)) + 1 for sk in s]
    out: dict[frozenset[int], float] = {}
    for v in sorted(boxes):
        sl = tuple(
            slice(max(0, b.start - g), min(n, b.stop + g)) for b, g, n in zip(boxes[v], grow, lm.shape)
        )
        crop = lm[sl]
        others = [int(u) for u in np.unique(crop) if u > v and int(u) in wanted]
        if not others:
            continue
        src = crop == v
        edt, ind = ndimage.distance_transform_edt(~src, sampling=s, return_indices=True)
        for u in others:
            tgt = crop == u
            near = tgt & (edt <= max_gap_mm + float(np.linalg.norm(s)) + 1e-9)
            if not near.any():
                continue
            tidx = np.nonzero(near)
            gaps2 = np.zeros(tidx[0].size, dtype=np.float64)
            for k in range(lm.ndim):
                d = np.abs(ind[k][tidx] - tidx[k]).astype(np.float64)
                gaps2 += (np.maximum(d - 1.0, 0.0) * s[k]) ** 2
            gap = float(np.sqrt(gaps2.min()))
            if gap <= max_gap_mm + 1e-9:
                out[frozenset((v, u))] = gap
    return out


def contacts(
    label_map: np.ndarray,
    spacing_mm: Sequence[float] | np.ndarray | float,
    tolerance_mm: float = 0.0,
    labels: Iterable[int] | None = None,
) -> set[frozenset[int]]:
    """Label pairs that touch: surface gap <= ``tolerance_mm`` (0: voxels share a face/edge/corner).

    Args:
        label_map: integer labels (X, Y, Z), 0 = background.
        spacing_mm: voxel spacing (3,) or a scalar.
        tolerance_mm: largest gap still counted as contact, mm.
        labels: restrict to these label values (default: all present).

    Returns:
        A set of ``frozenset({label_a, label_b})``.
    """
    return set(contact_gaps(label_map, spacing_mm, tolerance_mm, labels))
