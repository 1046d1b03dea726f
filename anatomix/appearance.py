"""Appearance: label map + per-organ SDFs -> float32 image in [0, 1].

Two steps, as everywhere in anatomix: :func:`sample_appearance` draws every random parameter
(JSON-able dict, stored in the case record); :func:`render_image` applies them
deterministically (noise fields come from seeds stored in the parameters).

Image model (``mode: fdif``), in Hounsfield-like units before the final window:

1. Body envelope: an elliptic cylinder around the organs (random margin); air outside,
   background tissue inside (fat / soft-tissue mix driven by a smooth random field).
2. Distractors: FDIF primitives (:mod:`anatomix.sdf`, random class, pose, displacement, mapper),
   unlabelled, painted only outside the organs and inside the body.
3. Organs: per-label intensity from a random model (per-label Gaussian mean and std, as in
   SynthSeg) or a CT-like prior (organ-typical HU in a random contrast phase: native, arterial,
   portal, delayed), chosen per case by ``ct_probability``; plus an FDIF texture on the
   organ's own SDF (an FDIF mapper applied to the SDF displaced by an FDIF displacement field).
4. Lesions: FDIF primitives inside a host organ (clipped to it: an ``inside`` relation),
   darker or brighter than the host; labelled as their own class or as the host.
5. Acquisition: multiplicative bias field, Gaussian blur with extra blur along z (slice
   thickness), Gaussian noise; then the CT window (-175..250 HU by default) normalises to
   [0, 1], followed by a random gamma (:mod:`anatomix.hounsfield`, which also makes the int16 HU
   that CT-like cases are written as).

``mode: contour`` reproduces Fake It Right: constant-intensity shells along each organ's
surface on a constant background. ``texture: none`` turns the FDIF textures off.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from anatomix.config import PHASES, AppearanceConfig
from anatomix.filters import gaussian_filter
from anatomix.grid import Grid, slabs
from anatomix.hounsfield import image_from_hu
from anatomix.render import Rendered
from anatomix.scene import PlacedOrgan, Scene
from anatomix.shape_field import ShapeSource, evaluate_upsampled, placed_field
from anatomix.upsample import TrilinearField, trilinear_box

__all__ = [
    "AppearanceConfig",
    "CT_PRIOR_HU",
    "PHASES",
    "render_hu",
    "render_image",
    "sample_appearance",
    "sample_lesions",
]


#: organ -> mean HU per phase (native, arterial, portal, delayed); unknown organs: soft tissue.
CT_PRIOR_HU: dict[str, tuple[float, float, float, float]] = {
    "liver": (55, 70, 110, 90),
    "spleen": (45, 110, 120, 90),
    "kidney_left": (35, 180, 170, 140),
    "kidney_right": (35, 180, 170, 140),
    "pancreas": (40, 110, 100, 80),
    "gallbladder": (10, 10, 12, 15),
    "stomach": (30, 70, 80, 60),
    "duodenum": (30, 70, 80, 60),
    "small_bowel": (30, 70, 80, 60),
    "colon": (10, 40, 50, 40),
    "esophagus": (40, 60, 70, 60),
    "aorta": (40, 300, 160, 110),
    "inferior_vena_cava": (40, 80, 130, 100),
    "portal_splenic_vein": (40, 130, 170, 110),
    "adrenal_gland_left": (30, 60, 70, 55),
    "adrenal_gland_right": (30, 60, 70, 55),
    "urinary_bladder": (10, 10, 12, 60),
}
_DEFAULT_HU = (40, 60, 80, 70)
AIR_HU = -1000.0
FAT_HU = -100.0
SOFT_HU = 40.0


def _u(rng: np.random.Generator, r: Sequence[float]) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


# ---------------------------------------------------------------------------------------------
# sampling (every random draw)
# ---------------------------------------------------------------------------------------------


def _fdif_object(rng: np.random.Generator, centre_mm: Sequence[float] | np.ndarray, size_mm: float,
                 allow_displacement: bool = True) -> dict[str, Any]:
    """An FDIF object (primitive, pose, displacement, mapper) centred at world ``centre_mm``."""
    from anatomix.sdf import (CLASS_NAMES, DISPLACEMENT_NAMES, MAPPER_NAMES, random_rotation,
                              sample_displacement, sample_primitive)

    cls = CLASS_NAMES[int(rng.integers(len(CLASS_NAMES)))]
    prim = sample_primitive(cls, size_mm, rng=rng)
    pose = {"translation_mm": [float(v) for v in centre_mm], "rotation": random_rotation(rng=rng).tolist(),
            "shear": [float(v) for v in rng.uniform(-0.1, 0.1, size=3)]}
    disp = None
    if allow_displacement and rng.random() < 0.9:
        disp = sample_displacement(DISPLACEMENT_NAMES[int(rng.integers(len(DISPLACEMENT_NAMES)))], rng=rng)
    mapper = MAPPER_NAMES[int(rng.integers(len(MAPPER_NAMES)))]
    return {"primitive": prim, "pose": pose, "displacement": disp, "mapper": mapper}


def sample_appearance(organs: Sequence[str], labels: dict[str, int], grid: Grid,
                      body_box_mm: tuple[Sequence[float], Sequence[float]], rng: np.random.Generator,
                      config: AppearanceConfig | None = None, *, context: Sequence[str] = ()) -> dict[str, Any]:
    """Draw every appearance parameter of a case (JSON-able).

    Args:
        organs: organ names present in the label map.
        labels: organ -> label value.
        grid: the output grid (objects are placed in its world coordinates, mm).
        body_box_mm: (min, max) world box of the placed organs (the body envelope surrounds it).
        rng: numpy Generator.
        config: appearance settings.
        context: context structure names (:mod:`anatomix.context`) of the case: they get tissue
            parameters too (CT tissue model, random per-label Gaussian mixtures or MR-like).
    """
    config = config or AppearanceConfig()
    p: dict[str, Any] = {"mode": config.mode, "texture": config.texture}
    lo, hi = np.asarray(body_box_mm[0], float), np.asarray(body_box_mm[1], float)
    margin = _u(rng, config.body_margin_mm)
    centre = (lo + hi) / 2.0
    p["body"] = {"centre_mm": [float(centre[0]), float(centre[1] + rng.uniform(-5, 5))],
                 "semi_axes_mm": [float((hi[0] - lo[0]) / 2 + margin + rng.uniform(0, 15)),
                                  float((hi[1] - lo[1]) / 2 + margin)],
                 "fat_hu": float(rng.normal(FAT_HU, 15.0)), "soft_hu": float(rng.normal(SOFT_HU, 10.0)),
                 "field_seed": _seed(rng)}
    if config.mode == "contour":
        p["contour"] = {"thickness_mm": _u(rng, config.contour_thickness_mm),
                        "background": float(rng.uniform(0.0, 0.3)),
                        "values": {o: float(rng.uniform(0.3, 1.0)) for o in organs}}
        return p
    use_ct = bool(rng.random() < config.ct_probability)
    phase = str(config.phases[int(rng.integers(len(config.phases)))]) if use_ct else None
    intens = {}
    prior: dict[str, Any] = {}
    model = "ct" if use_ct else "random"
    if context:
        from anatomix.prior import load_prior

        prior = load_prior(config.ct_prior) if use_ct and config.ct_prior else {}
        if use_ct and prior and rng.random() >= config.prior_probability:
            prior = {}
        if not use_ct and rng.random() < config.mr_probability:
            model = "mr_t1" if rng.random() < 0.5 else "mr_t2"
    for o in organs:
        if use_ct:
            base = prior[o]["mean_hu"] if o in prior else CT_PRIOR_HU.get(o, _DEFAULT_HU)[PHASES.index(phase)]
            mean = base + rng.normal(0, config.ct_jitter_hu)
        elif model != "random":
            from anatomix.tissue import mr_hu

            mean = mr_hu(o, model) + rng.normal(0, config.ct_jitter_hu)
        else:
            mean = rng.uniform(*config.random_mean_hu)
        tex = None
        # texture parameters are drawn whatever config.texture says (and dropped below when
        # off), so that switching textures leaves every other drawn parameter unchanged
        if rng.random() < config.texture_probability:
            from anatomix.sdf import DISPLACEMENT_NAMES, MAPPER_NAMES, sample_displacement

            tex = {"mapper": MAPPER_NAMES[int(rng.integers(len(MAPPER_NAMES)))],
                   "scale": _u(rng, config.texture_scale),
                   "amplitude_hu": float(_u(rng, config.texture_amplitude_hu) * rng.choice([-1.0, 1.0])),
                   "displacement": sample_displacement(
                       DISPLACEMENT_NAMES[int(rng.integers(len(DISPLACEMENT_NAMES)))], rng=rng)
                   if rng.random() < 0.7 else None}
            if config.texture == "none":
                tex = None
        intens[o] = {"mean_hu": float(mean), "std_hu": _u(rng, config.std_hu), "texture": tex}
    p["intensity_model"] = model
    p["phase"] = phase
    p["organs"] = intens
    p["noise_seed"] = _seed(rng)
    if context:
        from anatomix.tissue import sample_random_tissue, sample_tissue

        if use_ct:
            p["context"] = sample_tissue(list(context), phase or "portal", rng, prior=prior,
                                         jitter_hu=config.ct_jitter_hu)
        else:
            p["context"] = sample_random_tissue(list(context), rng, model=model, mean_hu=config.random_mean_hu,
                                                std_hu=config.std_hu, components=config.gmm_components)
    # distractors: FDIF primitives around the organs, inside the body
    n_d = int(rng.integers(config.distractors[0], config.distractors[1] + 1))
    shape = np.asarray(grid.shape)
    sp = np.asarray(grid.spacing_mm, float)
    ext = float(np.min(shape * sp))
    objs = []
    for _ in range(n_d):
        c = rng.uniform(lo - margin, hi + margin)
        obj = _fdif_object(rng, c, ext * rng.uniform(0.2, 0.6))
        obj["amplitude_hu"] = _u(rng, config.distractor_amplitude_hu)
        objs.append(obj)
    p["distractors"] = objs
    p["acquisition"] = {
        "bias": float(config.bias_field * rng.uniform(0, 1)), "bias_seed": _seed(rng),
        "blur_sigma_mm": _u(rng, config.blur_sigma_mm),
        "slice_thickness_mm": _u(rng, config.slice_thickness_mm),
        "noise_std_hu": _u(rng, config.noise_std_hu),
        "gamma": float(math.exp(rng.uniform(math.log(config.gamma[0]), math.log(config.gamma[1])))),
        "window_hu": [float(config.window_hu[0]), float(config.window_hu[1])],
    }
    if context:  # drawn last, and only with context: cases without context keep their bytes
        p["acquisition"].update({
            "noise_correlation_mm": _u(rng, config.noise_correlation_mm),
            "resolution_mm": [_u(rng, config.resolution_mm) for _ in range(3)],
            "invert": bool(rng.random() < config.invert_probability)})
    return p


def sample_lesions(scene: Scene, bank: ShapeSource, rng: np.random.Generator, config: AppearanceConfig,
                   lesion_label: int | None, cache: dict[str, Any] | None = None,
                   lattice_mm: float = 3.0) -> list[dict[str, Any]]:
    """Draw lesions inside host organs of the scene (centres where the host SDF is deep enough).

    Depends only on the scene, the bank and ``rng``, not on the output grid or any other draw:
    the same case gets the same lesions in any window, and switching textures or the lesion
    probability leaves every other parameter as it was. Host depth is measured on a
    ``lattice_mm`` lattice over the host's own box.
    """
    out: list[dict[str, Any]] = []
    if config.mode == "contour" or config.max_lesions == 0 or rng.random() >= config.lesion_probability:
        return out
    organs = {o.organ: o for o in scene.organs}
    hosts = [h for h in config.lesion_hosts if h in organs]
    if not hosts:
        return out
    depth: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    n = int(rng.integers(1, config.max_lesions + 1))
    for _ in range(n):
        host = hosts[int(rng.integers(len(hosts)))]
        r = _u(rng, config.lesion_radius_mm)
        if host not in depth:
            depth[host] = _host_lattice(organs[host], bank, cache, lattice_mm)
        points, sdf = depth[host]
        deep = np.flatnonzero(sdf <= -0.6 * r)
        if deep.size == 0:
            continue
        c = points[deep[int(rng.integers(len(deep)))]]
        obj = _fdif_object(rng, c, r / 0.18, allow_displacement=False)
        obj.update({"host": host, "contrast_hu": _u(rng, config.lesion_contrast_hu),
                    "label": int(lesion_label) if lesion_label is not None else int(organs[host].label)})
        out.append(obj)
    return out


def _host_lattice(organ: PlacedOrgan, bank: ShapeSource, cache: dict[str, Any] | None, step_mm: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) of a regular lattice over a placed organ's box and its SDF there (N,)."""
    fld = placed_field(organ, bank, cache)
    lo, hi = fld.world_box(0.0)
    n = np.maximum(np.floor((hi - lo) / step_mm).astype(int) + 1, 1)
    sdf = evaluate_upsampled(fld, lo - fld.translation, np.full(3, step_mm), n, np.ones(3, dtype=int)).numpy()
    idx = np.indices(tuple(int(v) for v in n)).reshape(3, -1).T
    return lo + idx * step_mm, sdf.reshape(-1)


# ---------------------------------------------------------------------------------------------
# rendering (deterministic)
# ---------------------------------------------------------------------------------------------


def _smooth_field(shape: Sequence[int], seed: int, coarse: int = 5) -> np.ndarray:
    """A smooth random field in [-1, 1] (trilinear upsampling of a coarse uniform grid)."""
    return trilinear_box(_coarse_values(seed, coarse), shape)


def _coarse_values(seed: int, coarse: int) -> np.ndarray:
    """The control values of :func:`_smooth_field`: (coarse, coarse, coarse) float32 in [-1, 1]."""
    g = np.random.Generator(np.random.PCG64(seed))
    return g.uniform(-1.0, 1.0, size=(coarse, coarse, coarse)).astype(np.float32)


def _object_values(obj: dict[str, Any], grid: Grid) -> tuple[tuple[slice, ...], torch.Tensor, torch.Tensor] | None:
    """(box, sdf, mapped value 0..1) of an FDIF object on its box."""
    from anatomix.sdf import apply_mapper, object_box, object_sdf

    box = object_box(obj, grid)
    if box is None:
        return None
    xs = [grid.axis_mm(ax, box[ax].start, box[ax].stop) for ax in range(3)]
    gx, gy, gz = torch.meshgrid(xs[0], xs[1], xs[2], indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1), gz.reshape(-1)], dim=1)
    shape = tuple(b.stop - b.start for b in box)
    d = object_sdf(obj, pts, grid).reshape(shape)
    val = apply_mapper(obj["mapper"], d) / 128.0
    return box, d, val


def body_mask(grid_shape: Sequence[int], spacing: Sequence[float] | np.ndarray, origin: Sequence[float],
              body: dict[str, Any]) -> np.ndarray:
    """Elliptic-cylinder body envelope (x, y), constant along z; bool (X, Y, Z)."""
    x = origin[0] + np.arange(grid_shape[0]) * spacing[0]
    y = origin[1] + np.arange(grid_shape[1]) * spacing[1]
    cx, cy = body["centre_mm"]
    ax, ay = body["semi_axes_mm"]
    m2 = ((x[:, None] - cx) / ax) ** 2 + ((y[None, :] - cy) / ay) ** 2 <= 1.0
    return np.broadcast_to(m2[:, :, None], tuple(grid_shape))


def apply_lesions(rendered: Rendered, label: np.ndarray, lesions: Sequence[dict[str, Any]]
                  ) -> list[tuple[tuple[slice, ...], np.ndarray, dict[str, Any]]]:
    """Paint lesion labels (clipped to the host organ) and return their (box, mask, params)."""
    g = rendered.grid
    out = []
    for les in lesions:
        if les["host"] not in rendered.sdfs:  # the host lies outside this grid
            continue
        res = _object_values(les, g)
        if res is None:
            continue
        box, d, _ = res
        hsl, hsdf = rendered.sdfs[les["host"]]
        host = np.full(tuple(b.stop - b.start for b in box), np.inf, dtype=np.float32)
        lo = [max(b.start, h.start) for b, h in zip(box, hsl)]
        hi = [min(b.stop, h.stop) for b, h in zip(box, hsl)]
        if any(a >= b for a, b in zip(lo, hi)):
            continue
        host[tuple(slice(a - b.start, c - b.start) for a, c, b in zip(lo, hi, box))] = \
            hsdf[tuple(slice(a - h.start, c - h.start) for a, c, h in zip(lo, hi, hsl))]
        mask = (d.numpy() <= 0) & (host <= 0) & (label[box] == rendered.labels[les["host"]])
        label[box][mask] = les["label"]
        out.append((box, mask, les))
    return out


def render_hu(rendered: Rendered, label: np.ndarray, params: dict[str, Any],
              lesions: Sequence[tuple[tuple[slice, ...], np.ndarray, dict[str, Any]]] = (),
              context: Any = None) -> np.ndarray:
    """Apply drawn appearance parameters: float32 image (x, y, z) in Hounsfield-like units, before
    the CT window (contour cases: their [0, 1] image).

    Args:
        rendered: output of :func:`anatomix.render.render_scene` (SDFs per organ in boxes).
        label: the final label map (lesions painted).
        params: from :func:`sample_appearance`.
        lesions: from :func:`apply_lesions`.
        context: a :class:`anatomix.context.ContextMap` (drawn with ``context=`` names in
            :func:`sample_appearance`): the tissue model renders it instead of the body ellipse.
    """
    g = rendered.grid
    shape = tuple(g.shape)
    sp = np.asarray(g.spacing_mm, float)
    body = body_mask(shape, sp, g.origin_mm, params["body"])
    if params["mode"] == "contour":
        c = params["contour"]
        img = np.where(body, np.float32(c["background"]), np.float32(0.0)).astype(np.float32)
        t = c["thickness_mm"]
        for organ, (sl, sdf) in rendered.sdfs.items():
            shell = (sdf <= 0) & (sdf > -t) & (label[sl] == rendered.labels[organ])
            img[sl][shell] = np.float32(c["values"].get(organ, 0.5))
        return img
    b = params["body"]
    if context is not None and "context" in params:
        from anatomix.tissue import render_tissue

        img = render_tissue(context.gen, context.names, params["context"], sp, params["noise_seed"])
        body = context.gen > 0
    else:
        field = _smooth_field(shape, b["field_seed"])
        img = (b["fat_hu"] + (b["soft_hu"] - b["fat_hu"]) * (0.5 + 0.5 * field)).astype(np.float32)
        img[~body] = AIR_HU
    distractors = params.get("distractors", ())
    if distractors:
        from anatomix.sdf import add_mapped_objects, mapper_margin_mm

        # culled block evaluation (FDIF mode's renderer); a mapper that glows outside (inverse_cube)
        # is not 0 in the corners of its box, where the culling stops: it keeps the box evaluation
        culled = [o for o in distractors if mapper_margin_mm(o["mapper"]) == 0.0]
        acc = torch.zeros(shape, dtype=torch.float32)
        add_mapped_objects(culled, [o["amplitude_hu"] / 128.0 for o in culled], g, acc)
        free = body & (label == 0)
        img += acc.numpy() * free
        for obj in distractors:
            if mapper_margin_mm(obj["mapper"]) == 0.0:
                continue
            res = _object_values(obj, g)
            if res is None:
                continue
            box, _, val = res
            img[box] += (np.float32(obj["amplitude_hu"]) * val.numpy()) * free[box]
    noise_rng = np.random.Generator(np.random.PCG64(params["noise_seed"]))
    for organ, (sl, sdf) in rendered.sdfs.items():
        ip = params["organs"].get(organ)
        if ip is None:
            continue
        region = label[sl] == rendered.labels[organ]
        if not region.any():
            continue
        vals = np.float32(ip["mean_hu"]) + np.float32(ip["std_hu"]) * noise_rng.standard_normal(
            size=int(region.sum()), dtype=np.float32)
        tex = ip.get("texture")
        if tex is not None:
            from anatomix.sdf import apply_mapper, displacement_field

            d = torch.from_numpy(sdf[region]) * float(tex["scale"])
            if tex.get("displacement") is not None:
                idx = np.argwhere(region)
                pts = torch.from_numpy(g.world_mm(idx + [s.start for s in sl]).astype(np.float32))
                d = d + 0.5 * displacement_field(tex["displacement"], pts, float(np.max(sp * np.asarray(shape)) / 2))
            vals += np.float32(tex["amplitude_hu"]) * (apply_mapper(tex["mapper"], d).numpy() / 128.0 - 0.5)
        img[sl][region] = vals
    for box, mask, les in lesions:
        img[box][mask] += np.float32(les["contrast_hu"])
    acq = params["acquisition"]
    if acq["bias"] > 0:
        # (img - AIR_HU) * exp(bias * field) + AIR_HU, in place and slab by slab (in the cache);
        # the field's slabs are _smooth_field's values
        bias_field = TrilinearField(_coarse_values(acq["bias_seed"], 4), shape)
        for slab in slabs(shape):
            bias = bias_field.slab(slab)
            bias *= np.float32(acq["bias"])
            np.exp(bias, out=bias)
            x = img[slab]
            x -= AIR_HU
            x *= bias
            x += AIR_HU
    sig = np.full(3, acq["blur_sigma_mm"]) / sp
    sig[2] = math.hypot(sig[2], acq["slice_thickness_mm"] / 2.355 / sp[2])
    res = np.asarray(acq.get("resolution_mm", (0.0, 0.0, 0.0)), float) / 2.355 / sp
    sig = np.hypot(sig, res)
    if np.any(sig > 0.2):
        img = gaussian_filter(img, sig, mode="nearest", truncate=3.0)
    if acq["noise_std_hu"] > 0:
        if acq.get("noise_correlation_mm", 0.0) > 0:
            from anatomix.tissue import correlated_noise

            img += correlated_noise(shape, sp, acq["noise_std_hu"], acq["noise_correlation_mm"],
                                    int(noise_rng.integers(0, 2**31 - 1)))
        else:
            img += np.float32(acq["noise_std_hu"]) * noise_rng.standard_normal(size=shape, dtype=np.float32)
    return img


def render_image(rendered: Rendered, label: np.ndarray, params: dict[str, Any],
                 lesions: Sequence[tuple[tuple[slice, ...], np.ndarray, dict[str, Any]]] = (),
                 context: Any = None) -> np.ndarray:
    """Apply drawn appearance parameters: float32 image (x, y, z) in [0, 1] (see :func:`image_from_hu`)."""
    return image_from_hu(render_hu(rendered, label, params, lesions, context=context), params)
