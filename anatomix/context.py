"""Context anatomy: skeleton, muscles, lung bases, bowel, bladder, vessels, body wall and fat.

Why one subject, deformed, and not every context structure placed by the organ graph: a spine,
ribs, pelvis and back muscles are only realistic *together* (vertebrae stacked with their
discs' spacing, ribs articulating with them, psoas along the lumbar bodies, hips around the
sacrum). Placing 60 structures one by one against pairwise relations gives a scene that
satisfies the relations and still looks like no body, and costs 4x the placement time. So a
case takes the whole context label map of one bank subject (the ``context`` bank, by default
``shapebank/default/context``: every structure TotalSegmentator labels in the whole-abdomen
fixture), maps it onto the virtual subject's body frame (the scene's ``body_scale``, a fitted
translation that puts the context subject's organs where the scene placed them, per-axis scale
jitter and a smooth elastic displacement), and the target organs placed by the graph are painted
on top and win. The context subject's own copies of the target organs become visceral fat, so
context never contradicts the placement's constraints.

The body wall is generated around it: per axial slice, the convex hull of every labelled
structure is the peritoneal/retroperitoneal space (unlabelled voxels inside it are visceral
fat), wrapped by an abdominal-muscle layer, subcutaneous fat (thickness varying smoothly) and
skin; air beyond.

:func:`sample_context` draws (JSON-able parameters); :func:`render_context` applies them.
Output classes: :func:`apply_context_labels` leaves context as background (default), marks it
with an ignore value, or labels every structure (``labels: all``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from anatomix.errors import AnatomixError
from anatomix.grid import Grid, slabs
from anatomix.upsample import TrilinearField

__all__ = ["WALL_NAMES", "ContextConfig", "ContextMap", "ContextSubject", "apply_context_labels",
           "context_label_names", "default_context_bank_path", "load_context_subject", "render_context",
           "sample_context"]

#: generated (not bank) structures, in generation-label order after the bank's structures.
WALL_NAMES = ("visceral_fat", "abdominal_muscle", "subcutaneous_fat", "skin")
_COARSE_MM = 3.0
_PAD_MM = 90.0


class ContextConfig(BaseModel):
    """Context anatomy settings (section ``context`` of an anatomy synthesis config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    bank: str | None = Field(None, description="context bank (one whole-body subject); none: the embedded one")
    labels: Literal["background", "ignore", "all"] = Field(
        "background", description="context in the output labels: background, ignore_value, or own classes")
    ignore_value: int = Field(255, ge=1, le=255)
    scale_jitter: tuple[float, float] = (0.93, 1.07)
    max_shift_mm: float = Field(30.0, ge=0.0)
    elastic_mm: tuple[float, float] = (0.0, 8.0)
    muscle_mm: tuple[float, float] = (6.0, 14.0)
    subcutaneous_fat_mm: tuple[float, float] = (6.0, 35.0)
    skin_mm: tuple[float, float] = (1.5, 3.0)

    @field_validator("scale_jitter", "elastic_mm", "muscle_mm", "subcutaneous_fat_mm", "skin_mm")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1] or v[0] < 0:
            raise ValueError(f"a range (min, max) with 0 <= min <= max, found {tuple(v)}")
        return v


def default_context_bank_path() -> Path:
    """``shapebank/default/context`` (one subject, every structure of the whole-abdomen fixture)."""
    from anatomix.bank import default_bank_path

    return default_bank_path() / "context"


@dataclass(frozen=True)
class ContextSubject:
    """One subject's context label map on a coarse body-frame grid (read-only, cached per process).

    Attributes:
        names: structure names; composite value ``k`` is ``names[k - 1]``.
        ids: uint8 (x, y, z) composite label map (0 = unlabelled).
        outside_mm: uint8 (x, y, z) in-plane distance (mm, clipped at 255) outside the slice's
            convex hull of all structures (0 inside).
        origin_mm: body-frame centre of voxel [0, 0, 0]; spacing_mm: voxel size.
        centroids_mm: structure -> body-frame centroid (to fit the context to a scene).
    """

    names: tuple[str, ...]
    ids: np.ndarray
    outside_mm: np.ndarray
    origin_mm: np.ndarray
    spacing_mm: float
    centroids_mm: dict[str, np.ndarray]


@functools.lru_cache(maxsize=4)
def load_context_subject(bank_path: str | None = None) -> ContextSubject:
    """Build the composite map of the bank's subject with the most structures (memoised)."""
    from scipy.ndimage import distance_transform_edt
    from skimage.morphology import convex_hull_image

    from anatomix.bank import ShapeBank

    path = Path(bank_path) if bank_path else default_context_bank_path()
    if not (path / "manifest.json").is_file():
        raise AnatomixError(f"context bank {path}: no manifest.json; build one with `anatomix ingest-masks "
                            "LABELMAP --out DIR` on one whole-abdomen label map (see shapebank/README.md), "
                            "or set context: {enabled: false}")
    bank = ShapeBank.load(path)
    subs = bank.manifest.subjects
    sub = max(subs, key=lambda s: (len(s.organs), s.subject_id))
    recs = sorted((r for r in bank.manifest.shapes if r.subject_id == sub.subject_id), key=lambda r: r.organ)
    sp = np.asarray(bank.spacing_mm, float)
    lo = np.min([r.origin_mm for r in recs], axis=0)
    hi = np.max([np.asarray(r.origin_mm) + (np.asarray(r.shape_vox) - 1) * sp for r in recs], axis=0)
    fine_shape = np.round((hi - lo) / sp).astype(int) + 1
    fine = np.zeros(tuple(fine_shape), dtype=np.uint8)
    names = []
    for k, r in enumerate(recs, start=1):
        m = bank.mask(r.shape_id)
        o = np.round((np.asarray(r.origin_mm) - lo) / sp).astype(int)
        view = fine[o[0]:o[0] + m.shape[0], o[1]:o[1] + m.shape[1], o[2]:o[2] + m.shape[2]]
        view[m[:view.shape[0], :view.shape[1], :view.shape[2]]] = k
        names.append(r.organ)
    step = max(1, int(round(_COARSE_MM / float(sp[0]))))
    coarse = fine[::step, ::step, ::step]
    csp = float(sp[0]) * step
    # the union of the crops ends in slices no structure reaches: keep the slices with anatomy,
    # so that a scene reaching past the subject repeats its last slice of body, not empty air
    zs = np.flatnonzero(coarse.any(axis=(0, 1)))
    coarse = coarse[:, :, zs[0]:zs[-1] + 1]
    lo = lo + np.array([0.0, 0.0, zs[0] * csp])
    pad = int(round(_PAD_MM / csp))
    ids = np.pad(coarse, ((pad, pad), (pad, pad), (0, 0)))
    outside = np.zeros(ids.shape, dtype=np.uint8)
    for z in range(ids.shape[2]):
        sl = ids[:, :, z] > 0
        if not sl.any():
            outside[:, :, z] = 255
            continue
        hull = convex_hull_image(sl)
        d = distance_transform_edt(~hull, sampling=(csp, csp))
        outside[:, :, z] = np.clip(np.round(d), 0, 255).astype(np.uint8)
    ids.setflags(write=False)
    outside.setflags(write=False)
    origin = lo - np.array([pad * csp, pad * csp, 0.0])
    cents = {r.organ: np.asarray(r.centroid_mm, float) for r in recs}
    return ContextSubject(tuple(names), ids, outside, origin, csp, cents)


def context_label_names(subject: ContextSubject, exclude: Sequence[str] = ()) -> list[str]:
    """Context structures that can appear in a case (bank structures not in ``exclude``, then the wall)."""
    ex = set(exclude)
    return [n for n in subject.names if n not in ex] + list(WALL_NAMES)


def _u(rng: np.random.Generator, r: Sequence[float]) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def sample_context(scene: Any, subject: ContextSubject, rng: np.random.Generator,
                   config: ContextConfig) -> dict[str, Any]:
    """Draw how the context subject maps onto the scene's body frame, and the body wall (JSON-able).

    ``world = scale * body_frame + translation``: ``scale`` is the scene's ``body_scale`` times a
    per-axis jitter; ``translation`` moves the context subject's copies of the placed organs onto
    the placed organs (least squares, clipped to ``max_shift_mm``), plus a small random shift.
    """
    scale = float(getattr(scene, "body_scale", 1.0)) * rng.uniform(config.scale_jitter[0], config.scale_jitter[1],
                                                                     size=3)
    diffs = [np.asarray(o.centroid_mm) - scale * subject.centroids_mm[o.organ]
             for o in getattr(scene, "organs", ()) if o.organ in subject.centroids_mm]
    t = np.mean(diffs, axis=0) if diffs else np.zeros(3)
    t = np.clip(t, -config.max_shift_mm, config.max_shift_mm) + rng.normal(0.0, 3.0, size=3)
    return {"scale": [float(v) for v in scale], "translation_mm": [float(v) for v in t],
            "elastic_mm": _u(rng, config.elastic_mm), "elastic_seed": int(rng.integers(0, 2**31 - 1)),
            "muscle_mm": _u(rng, config.muscle_mm), "subcutaneous_fat_mm": _u(rng, config.subcutaneous_fat_mm),
            "skin_mm": _u(rng, config.skin_mm), "fat_seed": int(rng.integers(0, 2**31 - 1))}


@dataclass(frozen=True)
class ContextMap:
    """Context rendered on a grid: ``gen`` uint8 generation labels (0 = air), ``names`` value -> name,
    ``structures`` the values of bank structures (not body wall / fat)."""

    gen: np.ndarray
    names: dict[int, str]
    structures: frozenset[int]


def _coarse_noise(seed: int, n: int, coarse: int = 4) -> np.ndarray:
    """The control values of :func:`_smooth_fields`' ``n`` fields: (n, coarse, coarse, coarse) float32."""
    g = np.random.Generator(np.random.PCG64(seed))
    return g.uniform(-1.0, 1.0, size=(n, coarse, coarse, coarse)).astype(np.float32)


def _smooth_fields(shape: Sequence[int], seed: int, n: int) -> TrilinearField:
    """``n`` smooth fields in [-1, 1] on ``shape``: coarse uniform noise (4^3 values each),
    upsampled trilinearly (torch's ``interpolate`` values), to be evaluated slab by slab."""
    return TrilinearField(_coarse_noise(seed, n), shape)


#: voxels per slab of :func:`render_context` (its float64 and index temporaries stay this small)
_SLAB_VOXELS = 1 << 17


def render_context(params: dict[str, Any], grid: Grid, subject: ContextSubject,
                   exclude: Sequence[str] = (), organs: np.ndarray | None = None) -> ContextMap:
    """The generation label map of the context on ``grid`` (deterministic).

    Args:
        params: from :func:`sample_context`.
        grid: output grid (world = scene body frame, mm).
        subject: from :func:`load_context_subject`.
        exclude: structures rendered by placement (the graph's organs): their context copies
            become visceral fat.
        organs: where the placed organs are (bool, grid shape), or None. Where one reaches past
            the subject's body wall, the wall's layers wrap it (see :func:`_wrap_organs`).
    """
    shape = tuple(int(s) for s in grid.shape)
    names_all = context_label_names(subject, ())
    ex = set(exclude)
    lut = np.zeros(256, dtype=np.uint8)
    for k, n in enumerate(subject.names, start=1):
        lut[k] = 0 if n in ex else k
    nb = len(subject.names)
    gen = np.empty(shape, dtype=np.uint8)
    # slab by slab along x: every value is per voxel, and a whole-abdomen volume of float64
    # temporaries (32 MB each) would be fresh memory from the OS on every case
    elastic = _smooth_fields(shape, params["elastic_seed"], 3) if params["elastic_mm"] > 0 else None
    fat = _smooth_fields(shape, params["fat_seed"], 1)
    for xs in slabs(shape, _SLAB_VOXELS):
        gen[xs] = _context_slab(params, grid, subject, xs, lut, nb, elastic, fat)
    if organs is not None:
        _wrap_organs(gen, organs, grid, params, nb)
    names = {k: n for k, n in enumerate(names_all[:nb], start=1) if n not in ex}
    names.update({nb + 1 + k: n for k, n in enumerate(WALL_NAMES)})
    structures = frozenset(k for k, n in names.items() if n not in WALL_NAMES)
    return ContextMap(gen, names, structures)


def _context_slab(params: dict[str, Any], grid: Grid, subject: ContextSubject, xs: slice, lut: np.ndarray,
                  nb: int, elastic: TrilinearField | None, fat_field: TrilinearField) -> np.ndarray:
    """:func:`render_context`'s generation labels on the x-slices ``xs`` of the grid."""
    shape = tuple(int(s) for s in grid.shape)
    box = (xs, slice(0, shape[1]), slice(0, shape[2]))
    bshape = tuple(b.stop - b.start for b in box)
    sp = np.asarray(grid.spacing_mm, float)
    axes = [(grid.origin_mm[a] + np.arange(shape[a]) * sp[a])[box[a]] for a in range(3)]
    s = np.asarray(params["scale"], float)
    t = np.asarray(params["translation_mm"], float)
    disp = None
    if elastic is not None:
        disp = elastic.slab(xs)
        disp *= np.float32(params["elastic_mm"])
    # the subject voxel of every grid voxel, as one flat index (one gather per subject array);
    # the arithmetic is the per-axis float32 body-frame position, then float64 subject index
    for a in range(3):
        q = (axes[a] - t[a]) / s[a]
        shp = [1, 1, 1]
        shp[a] = bshape[a]
        qa = q.reshape(shp).astype(np.float32)
        if disp is not None:
            np.divide(disp[a], np.float32(s[a]), out=disp[a])
            disp[a] += qa  # float32, as qa + disp[a] / s[a]
            qa = disp[a]
        i = np.subtract(qa, subject.origin_mm[a], dtype=np.float64)
        i /= subject.spacing_mm
        np.rint(i, out=i)
        np.clip(i, 0, subject.ids.shape[a] - 1, out=i)
        if a == 0:
            flat = i
        elif flat.shape == np.broadcast_shapes(flat.shape, i.shape):  # in place (elastic: full slab)
            flat *= subject.ids.shape[a]
            flat += i
        else:
            flat = flat * subject.ids.shape[a] + i
    where = np.broadcast_to(flat, bshape).astype(np.intp).reshape(-1)
    gen = lut[np.take(subject.ids.reshape(-1), where)]
    vf, mu, sf, sk = nb + 1, nb + 2, nb + 3, nb + 4
    # body wall layers on the voxels no structure took, by distance outside the body hull
    free = np.flatnonzero(gen == 0)
    outside = np.take(subject.outside_mm.reshape(-1), where[free]).astype(np.float32)
    fat = np.float32(params["subcutaneous_fat_mm"]) * (1.0 + 0.35 * fat_field.slab(xs)[0])
    m1 = np.float32(params["muscle_mm"])
    m2 = m1 + np.take(fat.reshape(-1), free)
    m3 = m2 + np.float32(params["skin_mm"])
    layer = np.zeros(free.size, dtype=np.uint8)
    layer[outside <= 0] = vf
    layer[(outside > 0) & (outside <= m1)] = mu
    layer[(outside > m1) & (outside <= m2)] = sf
    layer[(outside > m2) & (outside <= m3)] = sk
    gen[free] = layer
    return gen.reshape(bshape)


def _wrap_organs(gen: np.ndarray, organs: np.ndarray, grid: Grid, params: dict[str, Any], nb: int) -> None:
    """Wrap placed organs that reach past the body wall in its layers, in place.

    The wall comes from the context subject's outline, and a placed organ (another subject's
    shape) can reach past it: that organ would sit in air. There, muscle, subcutaneous fat and
    skin follow the organ's outline at their drawn thicknesses (distance to the organ), as a
    body wall bulging over it. Only the voxels of that air are touched, so cases whose
    organs lie inside the body are unchanged (and cost one comparison).
    """
    from scipy.ndimage import distance_transform_edt

    poking = organs & (gen == 0)  # organ voxels in air
    if not poking.any():
        return
    sp = np.asarray(grid.spacing_mm, float)
    m1 = float(params["muscle_mm"])
    m2 = m1 + float(params["subcutaneous_fat_mm"])
    m3 = m2 + float(params["skin_mm"])
    reach = np.ceil(m3 / sp).astype(int) + 1
    # one box per cluster of those voxels (clusters whose boxes would overlap stay one): the
    # distance transform then costs the clusters' boxes, not the box around all of them
    for points in _separate_clusters(np.argwhere(poking), 2 * reach):
        lo = [max(0, int(points[:, a].min()) - int(reach[a])) for a in range(3)]
        hi = [min(gen.shape[a], int(points[:, a].max()) + 1 + int(reach[a])) for a in range(3)]
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        # distances to the organ voxels in air only: near an organ inside the wall, the air beyond
        # the skin stays air (wrapping every organ would lay muscle outside the existing skin)
        sub, org = gen[box], poking[box]
        d = distance_transform_edt(~org, sampling=sp)  # in mm
        layers = np.zeros(sub.shape, dtype=np.uint8)
        layers[(d > 0) & (d <= m1)] = nb + 2  # abdominal_muscle
        layers[(d > m1) & (d <= m2)] = nb + 3  # subcutaneous_fat
        layers[(d > m2) & (d <= m3)] = nb + 4  # skin
        air = (sub == 0) & (layers > 0)
        sub[air] = layers[air]


def _separate_clusters(points: np.ndarray, gap: np.ndarray) -> list[np.ndarray]:
    """``points`` (n, 3 voxel indices) split into groups that are more than ``gap[a]`` voxels
    apart along some axis ``a`` (split where the sorted coordinates jump by more than that).

    The groups' boxes, each widened by ``gap / 2`` voxels per axis, then do not overlap: a voxel
    that near a point lies in the box of that point's group only.
    """
    todo, done = [points], []
    while todo:
        group = todo.pop()
        for a in range(3):
            group = group[np.argsort(group[:, a], kind="stable")]
            cuts = np.flatnonzero(np.diff(group[:, a]) > gap[a]) + 1
            if cuts.size:
                todo.extend(np.split(group, cuts))
                break
        else:
            done.append(group)
    return done


def apply_context_labels(label: np.ndarray, context: ContextMap, config: ContextConfig,
                         values: dict[str, int] | None = None) -> None:
    """Write context into the output label map, in place, where no target organ is.

    ``background``: nothing; ``ignore``: bank structures get ``config.ignore_value``; ``all``: every
    context structure (wall layers too) gets ``values[name]``.
    """
    if config.labels == "background":
        return
    free = label == 0
    if config.labels == "ignore":
        label[free & np.isin(context.gen, sorted(context.structures))] = config.ignore_value
        return
    if values is None:
        raise AnatomixError("context labels: all needs the label value of each context structure")
    lut = np.zeros(256, dtype=np.uint8)
    for k, n in context.names.items():
        lut[k] = values.get(n, 0)
    label[free] = lut[context.gen[free]]
