"""CT tissue model: structure name -> tissue class -> Hounsfield units, rendered on a label map.

Tissue classes (:data:`TISSUE_HU`): air, fat, muscle, bone (cortical shell + cancellous core),
cartilage, lung (air with a vessel texture), bowel gas / content (colon and small bowel: gas
pockets in faeces or fluid), fluid (bladder, gallbladder, cysts), vessel and parenchyma (by
contrast phase, :data:`PHASE_HU`), skin, nerve (spinal cord). A learned prior
(:mod:`anatomix.prior`, ``anatomix appearance learn``) replaces the table's mean/spread for the
structures it has measured.

As everywhere in anatomix, :func:`sample_tissue` draws (JSON-able parameters) and
:func:`render_tissue` applies them deterministically (noise fields from stored seeds).
:func:`partial_volume` blurs across boundaries (a positive kernel: a boundary profile stays
monotone) and :func:`correlated_noise` is white noise filtered to a given correlation length, as
reconstructed CT noise is.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from anatomix.filters import gaussian_filter

__all__ = ["MR_HU", "PHASE_HU", "TISSUE_HU", "correlated_noise", "hu_range", "mr_hu", "partial_volume",
           "cortex_depth", "render_tissue", "sample_random_tissue", "sample_tissue", "tissue_class"]

#: tissue class -> (mean HU, std HU) in any phase (structures that do not enhance much).
TISSUE_HU: dict[str, tuple[float, float]] = {
    "air": (-1000.0, 5.0),
    "fat": (-100.0, 12.0),
    "muscle": (50.0, 10.0),
    "bone_cortical": (1000.0, 150.0),
    "bone_cancellous": (220.0, 60.0),
    "cartilage": (140.0, 30.0),
    "lung": (-850.0, 40.0),
    "gas": (-950.0, 30.0),
    "bowel_content": (10.0, 25.0),
    "fluid": (8.0, 6.0),
    "skin": (30.0, 15.0),
    "nerve": (30.0, 8.0),
    "soft": (40.0, 10.0),
}

#: structures whose HU follows the contrast phase: (native, arterial, portal, delayed), std.
PHASE_HU: dict[str, tuple[tuple[float, float, float, float], float]] = {
    "vessel_artery": ((40, 300, 160, 110), 15.0),
    "vessel_vein": ((40, 80, 150, 110), 15.0),
    "vessel_portal": ((40, 130, 170, 110), 15.0),
    "blood": ((40, 250, 140, 100), 15.0),
    "parenchyma": ((45, 90, 100, 80), 12.0),
}

PHASES = ("native", "arterial", "portal", "delayed")

#: MR-like contrasts, expressed in the HU units the CT window maps to [0, 1] (-175 dark, 250
#: bright): tissue class -> (T1-like, T2-like) value.
MR_HU: dict[str, tuple[float, float]] = {
    "air": (-1000, -1000), "gas": (-1000, -1000), "lung": (-900, -900), "fat": (230, 160),
    "muscle": (-40, -90), "bone_cortical": (-175, -175), "bone_cancellous": (160, 90),
    "cartilage": (-60, 40), "bowel_content": (-80, 170), "fluid": (-140, 240), "skin": (40, 40),
    "nerve": (20, 60), "soft": (30, 20), "vessel_artery": (-170, -170), "vessel_vein": (-150, -160),
    "vessel_portal": (-150, -160), "blood": (-120, -140), "parenchyma": (60, 0), "bowel": (-80, 170),
}
_MR_ORGAN = {"liver": (80, -40), "spleen": (0, 110), "kidney_left": (-10, 120), "kidney_right": (-10, 120),
             "pancreas": (100, 10), "gallbladder": (-140, 240), "urinary_bladder": (-140, 240)}

_PREFIX_CLASS = (
    ("vertebrae_", "bone"), ("rib_", "bone"), ("hip_", "bone"), ("femur", "bone"), ("humerus_", "bone"),
    ("scapula_", "bone"), ("clavicula_", "bone"), ("lung", "lung"), ("gluteus_", "muscle"),
    ("iliopsoas_", "muscle"), ("autochthon_", "muscle"), ("iliac_artery", "vessel_artery"),
    ("iliac_vena", "vessel_vein"), ("kidney_cyst", "fluid"),
)
_NAME_CLASS = {
    "sacrum": "bone", "sternum": "bone", "skull": "bone", "costal_cartilages": "cartilage",
    "colon": "bowel", "small_bowel": "bowel", "intestine": "bowel", "rectum": "bowel",
    "urinary_bladder": "fluid", "gallbladder": "fluid", "heart": "blood", "atrial_appendage_left": "blood",
    "aorta": "vessel_artery", "inferior_vena_cava": "vessel_vein", "superior_vena_cava": "vessel_vein",
    "portal_splenic_vein": "vessel_portal", "pulmonary_vein": "blood", "spinal_cord": "nerve",
    "visceral_fat": "fat", "subcutaneous_fat": "fat", "abdominal_muscle": "muscle", "skin": "skin",
    "trachea": "gas", "esophagus": "parenchyma",
}


def tissue_class(name: str) -> str:
    """The tissue class of a structure (vocabulary name); unknown names are ``parenchyma``.

    >>> tissue_class("vertebrae_L3"), tissue_class("subcutaneous_fat"), tissue_class("liver")
    ('bone', 'fat', 'parenchyma')
    """
    if name in _NAME_CLASS:
        return _NAME_CLASS[name]
    for prefix, cls in _PREFIX_CLASS:
        if name.startswith(prefix):
            return cls
    return "parenchyma"


def _table_hu(cls: str, phase: str) -> tuple[float, float]:
    if cls in PHASE_HU:
        means, std = PHASE_HU[cls]
        return float(means[PHASES.index(phase)]), float(std)
    return TISSUE_HU.get(cls, TISSUE_HU["soft"])


def sample_tissue(names: Sequence[str], phase: str, rng: np.random.Generator, *,
                  prior: Mapping[str, Mapping[str, float]] | None = None, jitter_hu: float = 12.0
                  ) -> dict[str, dict[str, Any]]:
    """Draw the CT parameters of each structure (JSON-able).

    Args:
        names: structure names (vocabulary).
        phase: contrast phase (one of native, arterial, portal, delayed).
        rng: numpy Generator.
        prior: learned prior (``name -> {mean_hu, std_hu, texture_mm}``); where it has a
            structure, its mean/spread replace the table's.
        jitter_hu: standard deviation of the per-case shift of each mean.

    Returns:
        name -> ``{"tissue", "mean_hu", "std_hu", "texture_mm", ...}``; bone adds
        ``cortical_hu``, ``cortex_mm``; bowel adds ``gas_fraction``, ``gas_seed``.
    """
    prior = prior or {}
    out: dict[str, dict[str, Any]] = {}
    for n in names:
        cls = tissue_class(n)
        p: dict[str, Any] = {"tissue": cls}
        if cls == "bone":
            mean, std = TISSUE_HU["bone_cancellous"]
            p["cortical_hu"] = float(rng.normal(TISSUE_HU["bone_cortical"][0], 120.0))
            p["cortex_mm"] = float(rng.uniform(1.0, 2.5))
        elif cls == "bowel":
            mean, std = TISSUE_HU["bowel_content"]
            p["gas_fraction"] = float(rng.uniform(0.0, 0.45 if n != "small_bowel" else 0.15))
            p["gas_seed"] = int(rng.integers(0, 2**31 - 1))
        else:
            mean, std = _table_hu(cls, phase)
        if n in prior and cls not in ("bowel", "gas"):  # bowel: gas pockets are drawn, not averaged in
            mean, std = float(prior[n]["mean_hu"]), float(prior[n]["std_hu"])
        p["mean_hu"] = float(mean + rng.normal(0.0, jitter_hu if cls not in ("air", "gas", "lung") else 30.0))
        p["std_hu"] = float(max(1.0, std * rng.uniform(0.6, 1.3)))
        p["texture_mm"] = float(prior[n]["texture_mm"]) if n in prior and "texture_mm" in prior[n] \
            else float(rng.uniform(1.0, 3.0))
        out[n] = p
    return out


def mr_hu(name: str, model: str) -> float:
    """The MR-like value of a structure for ``model`` ``mr_t1`` or ``mr_t2`` (HU-window units)."""
    k = 0 if model == "mr_t1" else 1
    if name in _MR_ORGAN:
        return float(_MR_ORGAN[name][k])
    return float(MR_HU.get(tissue_class(name), MR_HU["soft"])[k])


def sample_random_tissue(names: Sequence[str], rng: np.random.Generator, *, model: str = "random",
                         mean_hu: Sequence[float] = (-150.0, 250.0), std_hu: Sequence[float] = (3.0, 25.0),
                         components: int = 2) -> dict[str, dict[str, Any]]:
    """SynthSeg-style parameters for every structure: a random Gaussian mixture per label
    (``model: random``: means uniform in ``mean_hu``, up to ``components`` Gaussians mixed by a
    smooth field), or an MR-like contrast (``mr_t1`` / ``mr_t2``: tissue-ordered means, jittered).

    Returns the same layout as :func:`sample_tissue` (bone's cortical value random too).
    """
    out: dict[str, dict[str, Any]] = {}
    for n in names:
        cls = tissue_class(n)
        if model == "random":
            mean = float(rng.uniform(mean_hu[0], mean_hu[1]))
        else:
            mean = mr_hu(n, model) + float(rng.normal(0.0, 20.0))
        p: dict[str, Any] = {"tissue": cls, "mean_hu": mean, "std_hu": float(rng.uniform(std_hu[0], std_hu[1])),
                             "texture_mm": float(rng.uniform(0.5, 4.0))}
        k = int(rng.integers(1, components + 1))
        if k > 1:
            p["mix_hu"] = float(rng.uniform(mean_hu[0], mean_hu[1]) if model == "random"
                                else mean + rng.normal(0.0, 40.0))
            p["mix_seed"] = int(rng.integers(0, 2**31 - 1))
        if cls == "bone":
            p["cortical_hu"] = float(rng.uniform(mean_hu[0], mean_hu[1]) if model == "random"
                                     else MR_HU["bone_cortical"][0])
            p["cortex_mm"] = float(rng.uniform(1.0, 2.5))
        out[n] = p
    return out


def correlated_noise(shape: Sequence[int], spacing_mm: Sequence[float] | np.ndarray, std: float, correlation_mm: float,
                     seed: int) -> np.ndarray:
    """Gaussian noise with standard deviation ``std`` and a Gaussian correlation of ``correlation_mm``.

    White noise filtered by a Gaussian kernel, rescaled so the output's std is ``std``; float32.
    """
    g = np.random.Generator(np.random.PCG64(seed))
    n = g.standard_normal(size=tuple(int(s) for s in shape), dtype=np.float32)
    sig = np.asarray([correlation_mm / s for s in spacing_mm], float)
    if np.any(sig > 0.3):
        n = gaussian_filter(n, sig, mode="wrap", truncate=3.0)
        sd = float(n.std())
        if sd > 0:
            n *= np.float32(1.0 / sd)
    if std != 1.0:  # in place: the values of n * std, without a second volume
        n *= np.float32(std)
    return n


def partial_volume(hu: np.ndarray, spacing_mm: Sequence[float], sigma_mm: float | Sequence[float]) -> np.ndarray:
    """Partial-volume mixing across boundaries: a Gaussian point-spread function (sigma in mm per axis).

    The kernel is positive, so across a boundary between two constant tissues the profile is
    monotone between the two values.
    """
    sig = np.broadcast_to(np.asarray(sigma_mm, float), (3,)) / np.asarray(spacing_mm, float)
    if not np.any(sig > 0.2):
        return hu.astype(np.float32, copy=False)
    return gaussian_filter(hu, sig, mode="nearest", truncate=3.0)


def cortex_depth(bone: np.ndarray, spacing_mm: Sequence[float] | np.ndarray, reach_mm: float) -> np.ndarray:
    """Distance (mm, float32) of each voxel of ``bone`` to the nearest voxel outside it, where that
    is at most ``reach_mm``; ``inf`` elsewhere (deeper voxels and voxels outside ``bone``).

    Equal to ``scipy.ndimage.distance_transform_edt(bone, sampling=spacing_mm)`` (cast to
    float32) wherever that is at most ``reach_mm``, at a fraction of its cost: a cortex is a few
    mm thick, so only the offsets within ``reach_mm`` are looked at (the distance of an offset is
    computed as scipy computes it, in float64, then cast).
    """
    sp = np.asarray(spacing_mm, dtype=np.float64)
    depth = np.full(bone.shape, np.inf, dtype=np.float32)
    reach = [int(math.floor(reach_mm / s)) for s in sp]
    offsets: dict[float, list[tuple[int, int, int]]] = {}
    for i in range(-reach[0], reach[0] + 1):
        for j in range(-reach[1], reach[1] + 1):
            for k in range(-reach[2], reach[2] + 1):
                d = float(np.float32(np.sqrt(((i * sp[0]) ** 2 + (j * sp[1]) ** 2) + (k * sp[2]) ** 2)))
                if 0 < d <= reach_mm:
                    offsets.setdefault(d, []).append((i, j, k))
    outside = ~bone
    for d in sorted(offsets):  # nearest first: a voxel keeps the first distance it gets
        near = np.zeros(bone.shape, dtype=bool)
        for o in offsets[d]:
            dst = tuple(slice(max(0, -v), n - max(0, v)) for v, n in zip(o, bone.shape))
            src = tuple(slice(max(0, v), n - max(0, -v)) for v, n in zip(o, bone.shape))
            near[dst] |= outside[src]
        depth[near & bone & np.isinf(depth)] = np.float32(d)
    return depth


def render_tissue(gen: np.ndarray, names: Mapping[int, str], params: Mapping[str, Mapping[str, Any]],
                  spacing_mm: Sequence[float] | np.ndarray, seed: int) -> np.ndarray:
    """HU image of a generation label map (deterministic).

    Args:
        gen: integer (x, y, z) generation labels; 0 = air (outside the body).
        names: generation label value -> structure name.
        params: from :func:`sample_tissue` (structures without parameters: soft tissue).
        spacing_mm: voxel size.
        seed: seed of the texture fields.

    Returns:
        float32 (x, y, z) HU image (before partial volume, acquisition noise and window).
    """
    from scipy.ndimage import find_objects

    from anatomix.upsample import trilinear_box

    shape = gen.shape
    img = np.full(shape, np.float32(TISSUE_HU["air"][0]), dtype=np.float32)
    sp = np.asarray(spacing_mm, float)
    texture_cache: dict[float, np.ndarray] = {}

    def texture(corr_mm: float) -> np.ndarray:
        # three correlation lengths shared by all structures of a case (one filtered field each)
        key = float(min((0.8, 1.6, 3.2), key=lambda c: abs(math.log(max(corr_mm, 0.1) / c))))
        if key not in texture_cache:
            texture_cache[key] = correlated_noise(shape, tuple(sp), 1.0, key, seed + int(key * 10))
        return texture_cache[key]

    def smooth(field_seed: int, box: tuple[slice, ...]) -> np.ndarray:
        # a smooth field (~8 mm blobs): coarse white noise upsampled trilinearly over the whole
        # grid; each field is read inside one structure, so only that structure's box is evaluated
        g = np.random.Generator(np.random.PCG64(field_seed))
        n = [max(2, int(math.ceil(shape[a] * sp[a] / 8.0)) + 1) for a in range(3)]
        return trilinear_box(g.standard_normal(size=tuple(n)).astype(np.float32), shape, box)

    boxes = find_objects(gen)  # boxes[v - 1]: the box of label v (None: absent); one pass
    bone_ids = [v for v, n in names.items() if params.get(n, {}).get("tissue") == "bone"
                and 0 < v <= len(boxes) and boxes[v - 1] is not None]
    depth = None
    if bone_ids:  # the cortex: bone voxels within cortex_mm of the bone's outside
        reach = max(float(params[names[v]]["cortex_mm"]) for v in bone_ids)
        depth = cortex_depth(np.isin(gen, bone_ids), sp, reach)
    for v, box in enumerate(boxes, start=1):
        if box is None or v not in names:
            continue
        n = names[v]
        p = params.get(n)
        if p is None:
            p = {"tissue": "soft", "mean_hu": TISSUE_HU["soft"][0], "std_hu": TISSUE_HU["soft"][1], "texture_mm": 2.0}
        m = gen[box] == v
        vals = np.float32(p["mean_hu"]) + np.float32(p["std_hu"]) * texture(p.get("texture_mm", 2.0))[box][m]
        if p["tissue"] == "bone" and depth is not None:
            shell = depth[box][m] <= np.float32(p["cortex_mm"])
            vals = np.where(shell, np.float32(p["cortical_hu"]), vals)
        elif p["tissue"] == "bowel" and p.get("gas_fraction", 0.0) > 0:
            f = smooth(int(p["gas_seed"]), box)[m]
            thr = np.float32(np.quantile(f, 1.0 - p["gas_fraction"])) if f.size else np.float32(np.inf)
            vals = np.where(f > thr, np.float32(TISSUE_HU["gas"][0]), vals)
        if "mix_hu" in p:  # a second Gaussian, mixed by a smooth field (SynthSeg's GMM per label)
            w = smooth(int(p["mix_seed"]), box)[m] > 0
            vals = np.where(w, vals + np.float32(p["mix_hu"] - p["mean_hu"]), vals)
        img[box][m] = vals
    return img


def hu_range(tissue: str, phase: str = "portal", n_std: float = 3.0) -> tuple[float, float]:
    """The HU interval (mean +- n_std std) the table gives a tissue class in a phase."""
    if tissue == "bone":
        lo = TISSUE_HU["bone_cancellous"][0] - n_std * TISSUE_HU["bone_cancellous"][1]
        return lo, TISSUE_HU["bone_cortical"][0] + n_std * TISSUE_HU["bone_cortical"][1]
    mean, std = _table_hu(tissue, phase)
    return mean - n_std * std, mean + n_std * std
