"""Separable Gaussian filtering of float32 volumes: scipy's ``gaussian_filter``, faster along the first two axes.

Texture and acquisition noise fields and the acquisition blur filter whole volumes. scipy filters
an axis of a C-ordered volume along lines whose points are a whole slab (first axis) or a whole
row (middle axis) apart, at up to three times the cost of the last axis. :func:`gaussian_filter`
filters those two axes as sums of shifted slices instead (symmetric kernel: ``w0 * x + sum_k wk
* (x[i - k] + x[i + k])``, in float32) and leaves the last axis to scipy. The kernel is scipy's
(``exp(-x^2 / 2 sigma^2)``, normalised, radius ``int(truncate * sigma + 0.5)``); the sums round in
float32 where scipy sums in float64, so values agree to about 1e-6 of the field's scale
(tests/test_filters.py).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["gaussian_filter"]

_MODES = ("wrap", "nearest")
_CHUNK_BYTES = 1 << 20  # a chunk stays in a core's L2 cache through the kernel's passes
_Index = tuple[int | slice, ...]


def _kernel(sigma: float, radius: int) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (sigma * sigma) * x * x)
    return phi / phi.sum()


def _source(i: int, n: int, mode: str) -> int:
    return i % n if mode == "wrap" else min(max(i, 0), n - 1)


def _filter_axis(x: np.ndarray, sigma: float, mode: str, truncate: float, axis: int,
                 chunk_bytes: int = _CHUNK_BYTES) -> np.ndarray:
    """One axis (0 or 1) of the filter as a sum of shifted slices of ``x`` (float32).

    A volume larger than the cache is worked through in chunks along the other of the first two
    axes, so the kernel's 3 * radius passes over a chunk stay in the cache; every output value is
    the same sum whatever the chunk size.
    """
    n = x.shape[axis]
    radius = int(truncate * sigma + 0.5)
    w = _kernel(sigma, radius)
    across = 1 - axis
    step = max(1, chunk_bytes // max(1, x.nbytes // max(1, x.shape[across])))
    out = np.empty_like(x)

    def at(i: int | slice) -> tuple[int | slice, ...]:
        return (slice(None),) * axis + (i,)

    # per kernel offset k: (output positions, the two input positions summed there), the interior
    # as one slice pair, the positions whose neighbours wrap or clamp one by one
    pairs: list[list[tuple[_Index, _Index, _Index]]] = []
    for k in range(1, radius + 1):
        pk = [(at(slice(k, n - k)), at(slice(0, n - 2 * k)), at(slice(2 * k, None)))] if n > 2 * k else []
        pk += [(at(i), at(_source(i - k, n, mode)), at(_source(i + k, n, mode)))
               for i in [*range(min(k, n)), *range(max(n - k, k), n)]]
        pairs.append(pk)
    for c in range(0, x.shape[across], step):
        part = (slice(None),) * across + (slice(c, c + step),)
        xc, o = x[part], out[part]
        np.multiply(xc, np.float32(w[radius]), out=o)
        tmp = np.empty_like(o)
        for k, pk in enumerate(pairs, start=1):
            for dst, a, b in pk:
                np.add(xc[a], xc[b], out=tmp[dst])
            tmp *= np.float32(w[radius + k])
            o += tmp
    return out


def gaussian_filter(x: np.ndarray, sigma: float | Sequence[float] | np.ndarray, mode: str = "nearest",
                    truncate: float = 3.0) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(x, sigma, mode=mode, truncate=truncate)`` of a 3D float32 array.

    Args:
        x: (x, y, z) float32 volume (not modified).
        sigma: standard deviation in voxels, one or per axis (0: that axis is not filtered).
        mode: ``wrap`` (periodic) or ``nearest`` (edge voxels repeated), as scipy's.
        truncate: kernel radius in standard deviations.

    Returns:
        The filtered volume, float32.
    """
    from scipy.ndimage import gaussian_filter1d

    if mode not in _MODES:
        raise ValueError(f"gaussian_filter: mode {mode!r}; expected one of {', '.join(_MODES)}")
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim != 3:
        raise ValueError(f"gaussian_filter: a 3D volume, found shape {a.shape}")
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (3,))
    out = a
    for axis in (0, 1):  # shifted slices; the last axis, contiguous lines, is scipy's own fast case
        if sig[axis] > 0 and int(truncate * sig[axis] + 0.5) > 0:
            out = _filter_axis(out, float(sig[axis]), mode, truncate, axis)
    if sig[2] > 0:
        out = gaussian_filter1d(out, float(sig[2]), axis=2, mode=mode, truncate=truncate)
    return out if out is not a else a.copy()
