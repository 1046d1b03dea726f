"""Trilinear upsampling of a coarse random field (``align_corners=True``), evaluable on a sub-box.

The smooth fields of appearance (bowel gas pockets, the second Gaussian of a randomised label)
are coarse white noise upsampled to the whole grid, but each is read only inside one structure.
:func:`trilinear_box` gives the values of ``torch.nn.functional.interpolate(coarse, size,
mode="trilinear", align_corners=True)`` on a box of the output only, with the same float32
arithmetic as torch's CPU kernel (the same bytes, checked in tests/test_upsample.py): the
kernel interpolates the last axis first, then the middle, then the first, each step
``fma(t0, w0, t1 * w1)``; the fused multiply-add is emulated exactly in float64 (the product of
two float32 values is exact there).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["trilinear_box", "trilinear_weights"]


def trilinear_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, upper index, lower weight, upper weight) of every output position of one axis,
    computed as torch does (float32 scale ``(n_in - 1) / (n_out - 1)`` times the output index)."""
    f32 = np.float32
    scale = f32(n_in - 1) / f32(n_out - 1) if n_out > 1 else f32(0.0)
    real = scale * np.arange(n_out, dtype=f32)
    i0 = np.floor(real).astype(np.int64)
    w1 = np.clip(real - i0.astype(f32), f32(0.0), f32(1.0)).astype(f32)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (f32(1.0) - w1).astype(f32), w1


def trilinear_box(coarse: np.ndarray, size: Sequence[int], box: Sequence[slice] | None = None) -> np.ndarray:
    """``coarse`` (3D float32) upsampled trilinearly (corners aligned) to ``size``, on ``box`` only.

    Args:
        coarse: (cx, cy, cz) float32 control values.
        size: the full output shape the field is defined on.
        box: slices of the output (steps of 1) to evaluate; None: all of it.

    Returns:
        float32 array of the box's shape, equal byte for byte to the same box of torch's
        ``interpolate`` output.
    """
    c = np.asarray(coarse, dtype=np.float32)
    if box is None:
        box = tuple(slice(0, int(n)) for n in size)
    out = c
    for axis in (2, 1, 0):  # torch's order: the last axis innermost
        i0, i1, w0, w1 = trilinear_weights(c.shape[axis], int(size[axis]))
        sl = box[axis]
        i0, i1, w0, w1 = i0[sl], i1[sl], w0[sl], w1[sl]
        shape = [1, 1, 1]
        shape[axis] = -1
        upper = np.take(out, i1, axis=axis)
        upper *= w1.reshape(shape)  # float32 product, rounded (the kernel's t1 * w1)
        acc = np.take(out, i0, axis=axis).astype(np.float64)
        acc *= w0.reshape(shape)  # exact: float32 x float32 fits in float64
        acc += upper  # one rounding to float32 below: the fused multiply-add
        out = acc.astype(np.float32)
    return out
