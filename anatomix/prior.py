"""Appearance priors learned from real image + label pairs (``anatomix appearance learn``).

For every labelled structure: robust mean (median HU), spread (1.4826 x median absolute
deviation) and texture scale (the correlation length of the intensity inside the structure,
from the lag-1 autocorrelation along each axis, assuming a Gaussian autocorrelation), measured
on the structure eroded by one voxel so that partial volume at its boundary does not bias
them. Pairs are read through :mod:`anatomix.io` (any format and orientation ingest reads);
label values are named by the file's embedded names, a preset or a label file, as in ingest.
Several pairs are pooled per structure (voxel-weighted medians of the per-pair statistics).

The shipped prior ``anatomix/data/ct_prior.json`` is fitted with this command from the
Apache-2.0 TotalSegmentator excerpt ``example_ct_sm.nii.gz`` + ``example_seg.nii.gz``
(not from ``example_ct.nii.gz``, the zero-shot test scan)::

    anatomix appearance learn --images ../shared/data/totalsegmentator/example_ct_sm.nii.gz \\
        --labels ../shared/data/totalsegmentator/example_seg.nii.gz --out anatomix/data/ct_prior.json
"""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from anatomix.errors import AnatomixError

__all__ = ["default_prior_path", "learn_prior", "load_prior", "structure_stats"]

MIN_VOXELS = 50


def default_prior_path() -> Path:
    return Path(__file__).resolve().parent / "data" / "ct_prior.json"


def structure_stats(image: np.ndarray, mask: np.ndarray, spacing_mm: Sequence[float]) -> dict[str, float] | None:
    """Robust HU statistics of one structure (None when fewer than MIN_VOXELS voxels remain eroded)."""
    from scipy.ndimage import binary_erosion

    core = binary_erosion(mask, iterations=1) if mask.sum() > 8 * MIN_VOXELS else mask
    vals = image[core].astype(np.float64)
    if vals.size < MIN_VOXELS:
        return None
    med = float(np.median(vals))
    mad = float(np.median(np.abs(vals - med)))
    x = image.astype(np.float64) - med
    rhos = []
    for ax in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[ax] = slice(0, -1)
        b[ax] = slice(1, None)
        both = core[tuple(a)] & core[tuple(b)]
        if both.sum() < MIN_VOXELS:
            continue
        u, v = x[tuple(a)][both], x[tuple(b)][both]
        den = math.sqrt(float((u * u).mean()) * float((v * v).mean()))
        if den <= 0:
            continue
        rho = float((u * v).mean()) / den
        rho = min(max(rho, 1e-3), 0.999)
        rhos.append(float(spacing_mm[ax]) / math.sqrt(-2.0 * math.log(rho)))
    tex = float(np.median(rhos)) if rhos else 1.0
    return {"mean_hu": round(med, 2), "std_hu": round(max(1.4826 * mad, 1.0), 2),
            "texture_mm": round(min(max(tex, 0.3), 10.0), 3), "voxels": int(vals.size)}


def _names(lv: Any, labels: str | os.PathLike | None, path: Path) -> dict[int, str]:
    from anatomix.label_tables import load_label_table
    from anatomix.labels import lenient_organ

    if labels in (None, "auto"):
        if not lv.names:
            raise AnatomixError(f"{path}: the label map embeds no label names; pass --labels PRESET|FILE "
                                "(e.g. totalsegmentator, btcv, or a JSON/YAML value: organ table)")
        out = {}
        for k, n in lv.names.items():
            try:
                out[int(k)] = lenient_organ(str(n))
            except AnatomixError:
                continue
        return out
    return {int(k): str(v) for k, v in load_label_table(labels).items()}


def _label_on_image(lv: Any, img: Any) -> np.ndarray:
    """The label map on the image's RAS grid (nearest neighbour by world position)."""
    if tuple(lv.array.shape[:3]) == tuple(img.array.shape) and np.allclose(lv.origin_mm, img.origin_mm, atol=1e-2) \
            and np.allclose(lv.spacing_mm, img.spacing_mm, atol=1e-4):
        return lv.array[..., 0] if lv.array.ndim == 4 else lv.array
    arr = lv.array[..., 0] if lv.array.ndim == 4 else lv.array
    idx = []
    for a in range(3):
        w = img.origin_mm[a] + np.arange(img.array.shape[a]) * img.spacing_mm[a]
        i = np.rint((w - lv.origin_mm[a]) / lv.spacing_mm[a]).astype(np.int64)
        ok = (i >= 0) & (i < arr.shape[a])
        idx.append((np.clip(i, 0, arr.shape[a] - 1), ok))
    g = np.ix_(idx[0][0], idx[1][0], idx[2][0])
    out = arr[g].copy()
    valid = idx[0][1][:, None, None] & idx[1][1][None, :, None] & idx[2][1][None, None, :]
    out[~valid] = 0
    return out


def learn_prior(images: Sequence[str | os.PathLike], labels: Sequence[str | os.PathLike], *,
                label_table: str | os.PathLike | None = None) -> dict[str, Any]:
    """Fit per-structure HU statistics from image + label pairs (``images[i]`` with ``labels[i]``).

    Returns:
        ``{"format": 1, "source_pairs": n, "structures": {name: {mean_hu, std_hu, texture_mm, voxels}}}``.

    Raises:
        AnatomixError: different numbers of images and labels, unreadable files, no structure measured.
    """
    from anatomix.io import read_image, read_label_map

    if len(images) != len(labels) or not images:
        raise AnatomixError(f"appearance learn needs one label map per image: found {len(images)} image(s) "
                            f"and {len(labels)} label map(s)")
    per: dict[str, list[dict[str, float]]] = {}
    for ip, lp in zip(images, labels):
        img = read_image(ip)
        lv = read_label_map(lp)
        names = _names(lv, label_table, Path(lp))
        lab = _label_on_image(lv, img)
        for v in np.unique(lab):
            v = int(v)
            if v == 0 or v not in names:
                continue
            st = structure_stats(img.array, lab == v, img.spacing_mm)
            if st is not None:
                per.setdefault(names[v], []).append(st)
    if not per:
        raise AnatomixError(f"no structure with at least {MIN_VOXELS} voxels was found in the label maps "
                            f"{[str(p) for p in labels]}; check --labels and that labels and images overlap")
    out = {}
    for n, sts in sorted(per.items()):
        w = np.array([s["voxels"] for s in sts], float)
        def wmed(key: str) -> float:
            vals = np.array([s[key] for s in sts], float)
            o = np.argsort(vals)
            c = np.cumsum(w[o])
            return float(vals[o][int(np.searchsorted(c, c[-1] / 2.0))])
        out[n] = {"mean_hu": round(wmed("mean_hu"), 2), "std_hu": round(wmed("std_hu"), 2),
                  "texture_mm": round(wmed("texture_mm"), 3), "voxels": int(w.sum())}
    return {"format": 1, "source_pairs": len(images), "structures": out}


@functools.lru_cache(maxsize=8)
def load_prior(path: str | None) -> dict[str, dict[str, float]]:
    """Structures of a prior JSON (``"default"``: the shipped one); memoised per process."""
    if path is None:
        return {}
    p = default_prior_path() if path == "default" else Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise AnatomixError(f"appearance prior {p}: expected a JSON file written by `anatomix appearance "
                            f"learn`, found {e}") from None
    st = data.get("structures") if isinstance(data, dict) else None
    if not isinstance(st, dict):
        raise AnatomixError(f"appearance prior {p}: expected a 'structures' table, found none; re-create it "
                            "with `anatomix appearance learn`")
    return {str(k): {kk: float(vv) for kk, vv in v.items()} for k, v in st.items()}
