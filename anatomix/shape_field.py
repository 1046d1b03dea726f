"""An organ's signed distance field under a pose: bank crops -> a function of world position.

Each placed organ is a function of world position ``x`` (mm, body frame, RAS):

    u = diag(1 / scale) @ R.T @ (x - translation)       shape frame, mm, about the shape centroid
    v = u + sum_k a_k * sin(2 pi f_k . u + phi_k)        smooth elastic deformation
    sdf(x) = s_geo * ((1 - w) * SDF_A(c_A + v) + w * SDF_B(c_B + v) - level)
             - sum_j d_j * exp(-|x - translation - o_j|^2 / (2 r_j^2))   surface bulges

``SDF_A``/``SDF_B`` are the bank's stored signed distance crops of two subjects' shapes of the
same organ, aligned about their centroids ``c_A``/``c_B`` and blended with weight ``w`` (``w = 0``:
one shape). Averaging two SDFs keeps little more than where both shapes agree, so a blend of
two thin or differently bent shapes (adrenals, pancreas, aorta) loses much of their volume;
``level`` (mm, shape frame) moves the blend's surface so that it keeps ``(1 - w) V_A + w V_B``
(:func:`blend_levels`). They are resampled with torch ``grid_sample`` (trilinear) only on a requested box,
never over a whole grid; outside a crop the value is the crop border's value (positive: the
bank's crops keep a margin of >= 8 voxels around the organ).

Placement scores candidate poses on a coarse lattice and rendering evaluates the output grid;
both evaluate through this module, so they see the same organ.

Device: ``organ_field(..., device=)`` puts the crops on a torch device (cached per device in
the caller's ``cache``); every ramp, grid and elastic field of :meth:`OrganField.eval_box` is
then made on the crops' device and the result is a tensor there (callers ``.cpu()`` where they
need numpy). The pose algebra (3x3 maps, box corners) stays in numpy on the host. The default
(``device=None``) is the CPU, exactly as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from anatomix.scene import PlacedOrgan
from anatomix.upsample import trilinear_box, upsample_twice

__all__ = ["OrganField", "ShapeSource", "bulge_bump", "evaluate_upsampled", "organ_field", "placed_field",
           "rotation_matrix"]


class ShapeSource(Protocol):
    """What rendering needs from a shape bank (``anatomix.bank.ShapeBank`` satisfies it)."""

    def sdf(self, shape_id: str) -> np.ndarray: ...

    def record(self, shape_id: str) -> Any: ...

def rotation_matrix(rotation_deg: Sequence[float]) -> np.ndarray:
    """Proper rotation (det +1, never a mirror) R = Rz @ Ry @ Rx from angles about x, y, z (degrees)."""
    ax, ay, az = (math.radians(float(a)) for a in rotation_deg)
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx

@dataclass
class _Part:
    volume: torch.Tensor  # (1, 1, X, Y, Z) float32 SDF crop, mm, on the field's device
    centroid_idx: torch.Tensor  # (3,) centroid in crop index coordinates (CPU, like spacing and size)
    spacing: torch.Tensor  # (3,) crop spacing mm
    size: torch.Tensor  # (3,) crop shape
    weight: float
    lo_mm: np.ndarray  # organ (mask) box relative to the centroid (shape frame), mm
    hi_mm: np.ndarray


@dataclass
class OrganField:
    """One placed organ's SDF as a function of world position (see module docstring).

    Attributes:
        matrix: (3, 3) world-offset -> shape-frame map ``diag(1/scale) @ R.T``.
        forward: (3, 3) shape-frame -> world-offset map ``R @ diag(scale)``.
        translation: (3,) world mm of the shape frame's origin.
        s_geo: geometric mean scale (SDF values are multiplied by it).
        elastic: list of (amplitude (3,), frequency (3,), phase) terms.
        parts: the bank crops and their blend weights.
        level_mm: the blend's iso-level in the shape frame (0 for one shape; :func:`blend_levels`).
        bulges: list of (centre offset from ``translation`` (3,) mm, radius mm, depth mm): the
            contact-closing bulges (:class:`anatomix.scene.SurfaceBulge`), in world mm.
    """

    matrix: np.ndarray
    forward: np.ndarray
    translation: np.ndarray
    s_geo: float
    elastic: list[tuple[np.ndarray, np.ndarray, float]]
    parts: list[_Part]
    elastic_max_mm: float = 0.0
    bulges: list[tuple[np.ndarray, float, float]] = field(default_factory=list)
    level_mm: float = 0.0
    _tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """The torch device the crops live on (and :meth:`eval_box` returns on)."""
        return self.parts[0].volume.device

    def local_box(self, margin_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Shape-frame box (mm, about the centroid) holding every part's organ, grown by ``margin_mm``."""
        # a bulge moves the surface outward by at most its depth (world mm, like the margin)
        world = margin_mm + max((d for _, _, d in self.bulges), default=0.0)
        grow = self.elastic_max_mm + max(0.0, self.level_mm) \
            + world / float(np.min(np.diag(self.forward.T @ self.forward)) ** 0.5)
        lo = np.min([p.lo_mm for p in self.parts], axis=0) - grow
        hi = np.max([p.hi_mm for p in self.parts], axis=0) + grow
        return lo, hi

    def offset_box(self, margin_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """World-offset box (mm, relative to ``translation``) holding the organ plus about ``margin_mm``."""
        lo, hi = self.local_box(margin_mm)
        corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        w = corners @ self.forward.T
        return w.min(axis=0), w.max(axis=0)

    def world_box(self, margin_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.offset_box(margin_mm)
        return lo + self.translation, hi + self.translation

    def eval_box(self, start: np.ndarray, step: np.ndarray, shape: Sequence[int] | np.ndarray) -> torch.Tensor:
        """SDF (mm) on the regular box ``translation + start + step * index`` of ``shape`` points.

        The map from box index to crop index is affine (one ``affine_grid`` per part); the elastic
        deformation is evaluated on a 4x coarser lattice and interpolated (its wavelengths are
        tens of mm, so this is exact to a small fraction of a voxel). Returns a float32 tensor of
        ``shape`` on :attr:`device`.
        """
        dev = self.device
        shape = tuple(int(v) for v in shape)
        n1 = np.maximum(np.asarray(shape) - 1, 1).astype(np.float64)
        half = np.asarray(step, dtype=np.float64) * n1 / 2.0
        centre = np.asarray(start, dtype=np.float64) + half  # offset of normalised coordinate 0
        disp = self._elastic_grid(centre, half, shape) if self.elastic else None
        out: torch.Tensor | None = None
        ticks = [_ticks(n, dev) for n in shape]
        for part in self.parts:
            pn1 = np.maximum(part.size.numpy().astype(np.float64) - 1, 1)
            g = np.diag(2.0 / (pn1 * part.spacing.numpy().astype(np.float64)))
            lin = g @ self.matrix @ np.diag(half)
            trans = g @ (self.matrix @ centre) + 2.0 * part.centroid_idx.numpy() / pn1 - 1.0
            # normalised crop coordinate at box index (i, j, k): trans + lin @ (2 idx / n1 - 1),
            # built as an outer sum of three 1D ramps, in torch (z, y, x) coordinate order; the
            # small coefficients cross to torch in one float32 array (rows: three ramp columns,
            # the shift, the elastic scale), not five tensors
            coef = torch.from_numpy(np.stack([lin[::-1, 0], lin[::-1, 1], lin[::-1, 2], trans[::-1],
                                              np.diag(g)[::-1]]).astype(np.float32)).to(dev)
            ramps = [ticks[d][:, None] * coef[d] for d in range(3)]
            grid = (ramps[0][:, None, None, :] + ramps[1][None, :, None, :]
                    + (ramps[2] + coef[3])[None, None, :, :])
            if disp is not None:
                grid = grid + disp[0] * coef[4]
            grid = grid[None]
            val = F.grid_sample(part.volume, grid, mode="bilinear", padding_mode="border",
                                align_corners=True)[0, 0]
            if part.weight != 1.0:
                val = val * part.weight
            out = val if out is None else out + val
        assert out is not None
        if self.level_mm != 0.0:
            out = out - self.level_mm
        out = out * self.s_geo if self.s_geo != 1.0 else out
        for offset, radius, depth in self.bulges:
            out = out - bulge_bump(offset, radius, depth, start, step, shape, dev).to(out.dtype)
        return out

    def _elastic_grid(self, centre: np.ndarray, half: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
        """Elastic displacement (shape frame, mm) on the box, (1, X, Y, Z, 3) in torch (z, y, x) order."""
        dev = self.device
        coarse = [max(2, int(math.ceil((s - 1) / 4.0)) + 1) if s > 1 else 1 for s in shape]
        axes = [torch.linspace(-1.0, 1.0, c, dtype=torch.float64, device=dev) if c > 1
                else torch.zeros(1, dtype=torch.float64, device=dev) for c in coarse]
        x = [centre[d] + half[d] * axes[d] for d in range(3)]
        m = torch.as_tensor(self.matrix, dtype=torch.float64, device=dev)
        u = (x[0][:, None, None, None] * m[:, 0] + x[1][None, :, None, None] * m[:, 1]
             + x[2][None, None, :, None] * m[:, 2])
        d = torch.zeros_like(u)
        # every term's frequency (times 2 pi) and amplitude in one float64 array: one transfer
        terms = torch.from_numpy(np.stack([np.concatenate([np.asarray(freq, np.float64) * (2.0 * math.pi),
                                                           np.asarray(amp, np.float64)])
                                           for amp, freq, _ in self.elastic])).to(dev)
        for k, (_, _, phase) in enumerate(self.elastic):
            d += torch.sin(u @ terms[k, :3] + phase)[..., None] * terms[k, 3:]
        d = d.flip(-1).permute(3, 0, 1, 2)[None].to(torch.float32)  # (1, 3, cx, cy, cz), (z,y,x) channels
        if tuple(coarse) == shape:
            return d.permute(0, 2, 3, 4, 1)
        if d.device.type == "cpu":  # torch's values at a third of its cost (one thread)
            up = trilinear_box(d[0].numpy(), shape)  # (3, X, Y, Z), each channel as its own call
            return torch.from_numpy(np.moveaxis(up, 0, -1))[None]
        d = F.interpolate(d, size=shape, mode="trilinear", align_corners=True)
        return d.permute(0, 2, 3, 4, 1)




_TICKS: dict[tuple[int, str], torch.Tensor] = {}


def _ticks(n: int, device: torch.device) -> torch.Tensor:
    """``torch.linspace(-1, 1, n)`` (float32; ``[-1]`` for one point), kept per size and device:
    the ramps of every box of that size share it (read only)."""
    key = (n, str(device))
    t = _TICKS.get(key)
    if t is None:
        t = torch.linspace(-1.0, 1.0, n, dtype=torch.float32, device=device) if n > 1 \
            else torch.full((1,), -1.0, device=device)
        if len(_TICKS) < 4096:
            _TICKS[key] = t
    return t


def bulge_bump(offset: Sequence[float] | np.ndarray, radius: float, depth: float, start: Sequence[float] | np.ndarray,
               step: Sequence[float] | np.ndarray | float, shape: Sequence[int],
               device: torch.device | str | None = None) -> torch.Tensor:
    """``depth * exp(-|x - offset|^2 / (2 radius^2))`` on the box ``start + step * index`` (float64).

    The surface-bulge term of an organ's SDF (:class:`anatomix.scene.SurfaceBulge`), subtracted
    by :meth:`OrganField.eval_box` and by placement's contact closing on its lattice. An isotropic
    Gaussian is separable: three 1D profiles and one outer product.
    """
    st = np.broadcast_to(np.asarray(start, dtype=np.float64), (3,))
    sp = np.broadcast_to(np.asarray(step, dtype=np.float64), (3,))
    prof = [torch.exp(-0.5 * ((float(st[d] - offset[d]) + float(sp[d]) * torch.arange(
        int(shape[d]), dtype=torch.float64, device=device)) / radius) ** 2) for d in range(3)]
    return (prof[0][:, None, None] * prof[1][None, :, None] * prof[2][None, None, :]) * depth


_SDF_CACHE_KEY = "_anatomix_torch_sdf_cache"


def _crop_tensor(bank: ShapeSource, shape_id: str, cache: dict[Any, Any] | None,
                 device: torch.device | str | None = None) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The crop as a (1, 1, X, Y, Z) tensor on ``device`` (default CPU) and the index box (lo, hi)
    of its organ (sdf <= 0).

    ``cache`` holds the CPU entry under ``shape_id`` and a copy per other device under
    ``(shape_id, "cuda:0")``-like keys, so each crop crosses to a device once per cache.
    """
    if device is not None:
        dev = torch.device(device)
        if dev.type != "cpu":
            if dev.type == "cuda" and dev.index is None:
                dev = torch.device("cuda", torch.cuda.current_device())
            key = (shape_id, str(dev))
            if cache is not None and key in cache:
                return cache[key]
            vol, lo, hi = _crop_tensor(bank, shape_id, cache)
            entry = (vol.to(dev), lo, hi)
            if cache is not None:
                cache[key] = entry
            return entry
    if cache is not None and shape_id in cache:
        return cache[shape_id]
    arr = np.array(bank.sdf(shape_id), dtype=np.float32, order="C")  # own, writable copy
    inside = arr <= 0
    if inside.any():
        idx = [np.nonzero(inside.any(axis=tuple(j for j in range(3) if j != d)))[0] for d in range(3)]
        lo = np.array([i[0] for i in idx], dtype=np.float64)
        hi = np.array([i[-1] for i in idx], dtype=np.float64)
    else:
        lo, hi = np.zeros(3), np.asarray(arr.shape, dtype=np.float64) - 1
    entry = (torch.from_numpy(arr)[None, None], lo, hi)
    if cache is not None:
        cache[shape_id] = entry
    return entry


#: grid points at most (per pair of shapes) that :func:`blend_levels` measures the volumes on
BLEND_LEVEL_POINTS = 20_000
#: blend weights at which :func:`blend_levels` finds the level; others interpolate linearly
BLEND_KNOTS = np.linspace(0.0, 1.0, 9)


def blend_levels(a: _Part, b: _Part, spacing_mm: np.ndarray, weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """The iso-levels (mm, shape frame) at which the blends ``(1 - w) SDF_A + w SDF_B`` of two
    centroid-aligned crops hold ``(1 - w) V_A + w V_B``, the weighted volume of the shapes
    themselves, for each ``w`` of ``weights`` (0 at w = 0 and 1).

    Measured on one shape-frame grid over both boxes (plus 10 mm), at the bank spacing or coarser
    (at most :data:`BLEND_LEVEL_POINTS` points). Volumes are sub-voxel: each point counts by how
    far inside it lies, a linear ramp one grid step wide in space (value / gradient), so a thin
    organ's volume does not jump with the grid; the shapes are measured on the same grid, so its
    bias cancels. Each level is found by bisection (a blend's volume grows with its level). On the
    CPU, so a case is the same on every device.
    """
    lo = np.minimum(a.lo_mm, b.lo_mm) - 10.0
    hi = np.maximum(a.hi_mm, b.hi_mm) + 10.0
    step = max(float(np.min(spacing_mm)), float(np.prod(hi - lo) / BLEND_LEVEL_POINTS) ** (1.0 / 3.0))
    n = np.maximum(np.ceil((hi - lo) / step).astype(int) + 1, 2)
    eye = np.eye(3)

    def sdf(part: _Part) -> torch.Tensor:
        one = OrganField(matrix=eye, forward=eye, translation=np.zeros(3), s_geo=1.0, elastic=[],
                         parts=[_Part(part.volume.cpu(), part.centroid_idx, part.spacing, part.size, 1.0,
                                      part.lo_mm, part.hi_mm)])
        return one.eval_box(lo, np.full(3, step), n).to(torch.float64)

    def volume(v: torch.Tensor, width: torch.Tensor | float, level: float) -> float:
        return float(torch.clamp(0.5 - (v - level) / width, 0.0, 1.0).sum())

    va, vb = sdf(a), sdf(b)
    vol_a, vol_b = volume(va, step, 0.0), volume(vb, step, 0.0)  # SDFs: unit gradient
    levels = np.zeros(len(weights))
    for k, w in enumerate(float(x) for x in weights):
        target = (1.0 - w) * vol_a + w * vol_b
        if not 0.0 < w < 1.0 or target <= 0.0:
            continue
        blend = (1.0 - w) * va + w * vb
        # a blend of SDFs is no SDF (its gradient is shorter where the parts disagree): the ramp
        # spans one grid step in space, not in value
        gx, gy, gz = torch.gradient(blend, spacing=step)
        width = (gx * gx + gy * gy + gz * gz).sqrt_().clamp_min_(0.05) * step
        low, high = -10.0, 10.0  # mm: a blend lies no farther outside than its farther part
        for _ in range(24):  # 20 mm / 2^24: far below a voxel
            mid = (low + high) / 2.0
            if volume(blend, width, mid) < target:
                low = mid
            else:
                high = mid
        levels[k] = round((low + high) / 2.0, 6)
    return levels


def _rec(record: Any, name: str) -> Any:
    return record[name] if isinstance(record, dict) else getattr(record, name)


def organ_field(
    bank: ShapeSource,
    shape_id: str,
    blend_shape_id: str | None,
    blend_weight: float,
    scale: Sequence[float],
    rotation_deg: Sequence[float],
    translation_mm: Sequence[float],
    elastic: Sequence[dict[str, Any]] | Sequence[tuple[Any, Any, float]] = (),
    cache: dict[str, Any] | None = None,
    spacing_mm: Sequence[float] | None = None,
    device: torch.device | str | None = None,
    bulges: Sequence[tuple[Sequence[float], float, float]] = (),
) -> OrganField:
    """Build an organ's SDF function from its parameters and the bank crops.

    Args:
        bank: a shape bank (``.sdf(shape_id)``, ``.record(shape_id)`` with ``origin_mm``,
            ``centroid_mm`` in the body frame).
        shape_id, blend_shape_id, blend_weight: the shape(s) and the weight of the second one.
        scale: (3,) scale factors along the shape-frame axes (> 0; no mirroring).
        rotation_deg: (3,) angles about x, y, z.
        translation_mm: world (body-frame) position of the blended shape's centroid.
        elastic: terms ``{"amplitude_mm": (3,), "frequency_per_mm": (3,), "phase": float}``.
        cache: optional dict reused across calls for the crops as torch tensors.
        spacing_mm: bank spacing, when records do not give it (default ``bank.spacing_mm``).
        device: torch device of the crops and of every evaluation (default: CPU).
        bulges: (centre offset from ``translation_mm`` (3,), radius, depth) of each surface bulge, mm.
    """
    sp = np.asarray(spacing_mm if spacing_mm is not None else getattr(bank, "spacing_mm"), dtype=np.float64)
    sp = np.broadcast_to(sp, (3,)).copy()
    parts: list[_Part] = []
    ids = [(shape_id, 1.0 - float(blend_weight))]
    if blend_shape_id is not None and blend_weight > 0:
        ids.append((blend_shape_id, float(blend_weight)))
    else:
        ids = [(shape_id, 1.0)]
    for sid, w in ids:
        rec = bank.record(sid)
        vol, box_lo, box_hi = _crop_tensor(bank, sid, cache, device)
        size = np.asarray(vol.shape[2:], dtype=np.float64)
        c_idx = (np.asarray(_rec(rec, "centroid_mm"), float) - np.asarray(_rec(rec, "origin_mm"), float)) / sp
        parts.append(_Part(
            volume=vol,
            centroid_idx=torch.as_tensor(c_idx, dtype=torch.float32, device="cpu"),  # host-side pose algebra
            spacing=torch.as_tensor(sp, dtype=torch.float32, device="cpu"),
            size=torch.as_tensor(size, dtype=torch.float32, device="cpu"),
            weight=w,
            lo_mm=(box_lo - 1 - c_idx) * sp,
            hi_mm=(box_hi + 1 - c_idx) * sp,
        ))
    level = 0.0
    if len(parts) > 1:  # derived from the two shapes (levels at BLEND_KNOTS, cached per pair) and the weight
        key = f"blend_levels:{shape_id}:{blend_shape_id}"
        knots = cache.get(key) if cache is not None else None
        if knots is None:
            knots = blend_levels(parts[0], parts[1], sp, BLEND_KNOTS)
            if cache is not None:
                cache[key] = knots
        level = float(np.interp(float(blend_weight), BLEND_KNOTS, knots))
    s = np.asarray(scale, dtype=np.float64)
    r = rotation_matrix(rotation_deg)
    terms = []
    emax = 0.0
    for t in elastic:
        if isinstance(t, dict):
            a, f, ph = t["amplitude_mm"], t["frequency_per_mm"], t["phase"]
        else:
            a, f, ph = t
        a = np.asarray(a, dtype=np.float64)
        terms.append((a, np.asarray(f, dtype=np.float64), float(ph)))
        emax += float(np.abs(a).max())
    return OrganField(matrix=np.diag(1.0 / s) @ r.T, forward=r @ np.diag(s),
                      translation=np.asarray(translation_mm, dtype=np.float64),
                      s_geo=float(np.prod(s) ** (1.0 / 3.0)), elastic=terms, parts=parts,
                      elastic_max_mm=emax, level_mm=level,
                      bulges=[(np.asarray(o, dtype=np.float64), float(r_), float(d)) for o, r_, d in bulges])


def placed_field(organ: PlacedOrgan, bank: ShapeSource, cache: dict[str, Any] | None = None,
                 device: torch.device | str | None = None) -> OrganField:
    """The :class:`OrganField` of a placed organ of a Scene (crops on ``device``, default CPU)."""
    return organ_field(bank, organ.shape_id, organ.blend_shape_id, organ.blend_weight, organ.scale,
                       organ.rotation_deg, organ.translation_mm,
                       [e.model_dump() for e in organ.elastic], cache=cache, device=device,
                       bulges=[(b.offset_mm, b.radius_mm, b.depth_mm) for b in organ.bulges])


def evaluate_upsampled(fld: OrganField, start: np.ndarray, step: np.ndarray, n: np.ndarray,
                    factors: np.ndarray) -> torch.Tensor:
    """SDF on a box, evaluated on a ``factors``-times coarser lattice and upsampled (trilinear).

    A signed distance field is piecewise smooth, so trilinear upsampling from twice the spacing
    moves the zero level set by a small fraction of a voxel while costing an eighth of the
    ``grid_sample`` work. The result is on the field's device.
    """
    if np.all(factors == 1):
        return fld.eval_box(start, step, n)
    nc = np.where(n > 1, np.ceil((n - 1) / factors).astype(int) + 1, 1)
    coarse = fld.eval_box(start, step * factors, nc)
    # (nc - 1) * factors + 1 points: the bytes of F.interpolate(trilinear, align_corners=True)
    up = upsample_twice(coarse, [int(f) for f in factors])
    return up[: n[0], : n[1], : n[2]]
