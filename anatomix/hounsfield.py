"""What a case's Hounsfield-unit image becomes: the [0, 1] training image (the CT window and the
drawn gamma) and the int16 HU file values (CT-like cases, as real CT is stored).

:func:`window` owns the gamma; :func:`hu_int16` reuses its output when the caller has it. Both
run slab by slab (:func:`anatomix.grid.slabs`): a whole-abdomen volume is 30 MB, and their
passes then stay in the cache.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from anatomix.grid import slabs

__all__ = ["hu_int16", "image_from_hu", "is_ct_like", "window"]


def window(hu: np.ndarray, window_hu: Sequence[float], gamma: float = 1.0) -> np.ndarray:
    """CT window normalisation: clip((hu - low) / (high - low), 0, 1) ** gamma, float32."""
    lo, hi = float(window_hu[0]), float(window_hu[1])
    hu = np.asarray(hu)
    out = np.empty(hu.shape, dtype=np.float32)
    for sl in slabs(out.shape):  # float32 throughout, in place, slab by slab (in the cache)
        x = out[sl]
        np.subtract(hu[sl], lo, dtype=np.float32, out=x)
        x *= np.float32(1.0 / (hi - lo))
        np.clip(x, 0.0, 1.0, out=x)
        if gamma > 0.0 and gamma != 1.0:  # x ** gamma as exp(gamma log x): vectorised, within 2e-7 of powf
            with np.errstate(divide="ignore"):  # log 0 = -inf, and exp(-inf) = 0 = 0 ** gamma (gamma > 0)
                np.log(x, out=x)
            x *= np.float32(gamma)
            np.exp(x, out=x)
        elif gamma != 1.0:  # a hand-written gamma <= 0 (sampling draws none): powf's values
            np.power(x, np.float32(gamma), out=x)
    return out


def image_from_hu(hu: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """The [0, 1] image of :func:`anatomix.appearance.render_hu`'s output: the CT window with the drawn gamma, then the
    drawn contrast inversion (contour cases: as they are)."""
    if params["mode"] == "contour":
        return hu
    acq = params["acquisition"]
    out = window(hu, acq["window_hu"], acq["gamma"])
    if acq.get("invert"):
        out = np.float32(1.0) - out
    return out


def is_ct_like(params: dict[str, Any]) -> bool:
    """Whether a case's image is CT-like (written as int16 HU): not contour, MR-like or inverted."""
    return (params["mode"] != "contour" and not str(params.get("intensity_model", "")).startswith("mr")
            and not params.get("acquisition", {}).get("invert"))


def hu_int16(hu: np.ndarray, params: dict[str, Any], windowed: np.ndarray | None = None) -> np.ndarray:
    """A case's Hounsfield-unit image as written (int16, -1024..3071, as real CT is stored).

    The drawn gamma acts inside the CT window exactly as on the windowed image (outside it HU are
    kept), so windowing the file with the same window gives the training image back to within
    the int16 step (1 HU, 1/425 of the default window).

    Args:
        hu: from :func:`anatomix.appearance.render_hu`.
        params: from :func:`anatomix.appearance.sample_appearance`.
        windowed: ``window(hu, ...)`` with this case's window and gamma, when the caller has it
            (its gamma is not computed again); not an inverted image.
    """
    acq = params["acquisition"]
    lo, hi = (float(v) for v in acq["window_hu"])
    gamma = float(acq["gamma"])
    hu = np.asarray(hu, dtype=np.float32)
    gammaed = None if gamma == 1.0 else windowed if windowed is not None else window(hu, (lo, hi), gamma)
    out = np.empty(hu.shape, dtype=np.int16)
    for sl in slabs(hu.shape):  # slab by slab: the passes below stay in the cache
        h = hu[sl]
        if gammaed is not None:  # inside the window: lo + (hi - lo) * ((h - lo) / (hi - lo)) ** gamma
            t = gammaed[sl] * np.float32(hi - lo)
            t += np.float32(lo)
            h = np.where((h >= lo) & (h <= hi), t, h)
        clipped = np.clip(h, -1024.0, 3071.0)
        out[sl] = np.rint(clipped, out=clipped)
    return out
