"""Trilinear upsampling of a coarse random field (``align_corners=True``), evaluable on a sub-box.

The smooth fields of appearance (bowel gas pockets, the second Gaussian of a randomised label,
the bias field) and of context anatomy (its elastic and fat fields), and the elastic field of an
organ, are coarse random values upsampled trilinearly. :func:`trilinear_box` gives the values of
``torch.nn.functional.interpolate(coarse, size, mode="trilinear", align_corners=True)`` on a box
of the output (or all of it) at a third to a quarter of torch's single-thread cost, with the same float32
arithmetic as torch's CPU kernel (the same bytes where that kernel fuses multiply-adds, as on
the development machine; within one float32 rounding step elsewhere: tests/test_upsample.py): the
kernel interpolates the last axis first, then the middle, then the first, each step
``fma(t0, w0, t1 * w1)``; the fused multiply-add is emulated in float64 (the product of two
float32 values is exact there; the sum is rounded twice, float64 then float32, which in rare
halfway cases can differ from one rounding by a unit in the last place).

:func:`upsample_twice` is the same interpolation where the output spacing is exactly half the
coarse one (organ SDFs evaluated at twice the spacing): its weights are 1 and 0 on the coarse
points and 1/2 and 1/2 between them, so each axis step is a copy or ``(a + b) * 0.5``, exact in
float32 and any device, the bytes of torch's CPU kernel at a fraction of its cost.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch

__all__ = ["TrilinearField", "trilinear_box", "trilinear_weights", "upsample_twice"]


@functools.lru_cache(maxsize=4096)
def trilinear_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, upper index, lower weight, upper weight) of every output position of one axis,
    computed as torch does (float32 scale ``(n_in - 1) / (n_out - 1)`` times the output index).

    Memoised (a case asks for the same few axis lengths hundreds of times): the arrays are read-only.
    """
    f32 = np.float32
    scale = f32(n_in - 1) / f32(n_out - 1) if n_out > 1 else f32(0.0)
    real = scale * np.arange(n_out, dtype=f32)
    i0 = np.floor(real).astype(np.int64)
    w1 = np.clip(real - i0.astype(f32), f32(0.0), f32(1.0)).astype(f32)
    i1 = np.minimum(i0 + 1, n_in - 1)
    out = (i0, i1, (f32(1.0) - w1).astype(f32), w1)
    for a in out:
        a.setflags(write=False)
    return out


#: output voxels up to which :func:`trilinear_box` makes the first axis in one step (above: slab by slab)
_ONE_STEP_VOXELS = 1 << 20


def trilinear_box(coarse: np.ndarray, size: Sequence[int], box: Sequence[slice] | None = None,
                  out: np.ndarray | None = None) -> np.ndarray:
    """``coarse`` (3D float32) upsampled trilinearly (corners aligned) to ``size``, on ``box`` only.

    Args:
        coarse: (cx, cy, cz) float32 control values, or (c, cx, cy, cz): ``c`` fields at once
            (each channel's values are those of its own call).
        size: the full output shape the field is defined on.
        box: slices of the output (steps of 1) to evaluate; None: all of it.
        out: a float32 array of the box's shape (with the leading channels, if any) to write into
            (e.g. one channel of a stack).

    Returns:
        float32 array of the box's shape (channels first): the same box of torch's ``interpolate``
        output (byte for byte where torch's kernel fuses multiply-adds).
    """
    if box is None:
        box = tuple(slice(0, int(n)) for n in size)
    return TrilinearField(coarse, size, box[1:]).slab(box[0], out=out)


class TrilinearField:
    """:func:`trilinear_box` of one coarse field, made slab by slab along the first axis.

    The last two axes are interpolated once, on the (y, z) part of the output asked for
    (``yz_box``); each :meth:`slab` interpolates the first axis from them. A caller that walks
    a large volume in slabs (context anatomy) so pays for the last two axes once, not per slab;
    the values are those of :func:`trilinear_box` on the same box.
    """

    def __init__(self, coarse: np.ndarray, size: Sequence[int], yz_box: Sequence[slice] | None = None) -> None:
        c = np.asarray(coarse, dtype=np.float32)
        self.lead = c.ndim - 3  # 0, or 1 with a channel axis
        if self.lead not in (0, 1):
            raise ValueError(f"trilinear_box: coarse of 3 or 4 dimensions, found shape {c.shape}")
        self.size = tuple(int(n) for n in size)
        self.n_in = c.shape[self.lead]
        yz = tuple(yz_box) if yz_box is not None else (slice(0, self.size[1]), slice(0, self.size[2]))
        field = c
        for axis in (2, 1):  # torch's order: the last axis innermost
            weights = _box_weights(c.shape[self.lead + axis], self.size[axis], yz[axis - 1])
            field = _along(field, self.lead + axis, *weights).astype(np.float32)  # one rounding: the fused multiply-add
        self.field = field  # ([c,] cx, ny, nz)
        self._field64: np.ndarray | None = None

    def slab(self, xs: slice, out: np.ndarray | None = None) -> np.ndarray:
        """The output on x-slices ``xs`` (steps of 1) and the (y, z) box: ([c,] nx, ny, nz) float32."""
        lead, field = self.lead, self.field
        i0, i1, w0, w1 = _box_weights(self.n_in, self.size[0], xs)
        res_shape = field.shape[:lead] + (len(i0),) + field.shape[lead + 1:]
        res = np.empty(res_shape, dtype=np.float32) if out is None else out
        if int(np.prod(res_shape)) <= _ONE_STEP_VOXELS:  # small: the first axis in one step
            res[...] = _along(field, lead, i0, i1, w0, w1)
            return res
        # large: one output slab at a time (two source slabs, two weights), so the float64
        # intermediate is one slab, not the whole volume
        if self._field64 is None:
            self._field64 = field.astype(np.float64)
        chans = [(field, self._field64, res)] if lead == 0 else list(zip(field, self._field64, res))
        for f, f64, r in chans:
            upper = np.empty(f.shape[1:], dtype=np.float32)
            acc = np.empty(f.shape[1:], dtype=np.float64)
            for k in range(len(i0)):
                np.multiply(f[i1[k]], w1[k], out=upper)
                np.multiply(f64[i0[k]], np.float64(w0[k]), out=acc)
                acc += upper
                r[k] = acc
        return res


def _along(field: np.ndarray, axis: int, i0: np.ndarray, i1: np.ndarray, w0: np.ndarray,
           w1: np.ndarray) -> np.ndarray:
    """One axis of the interpolation, in float64 before its one rounding to float32 (the caller's):
    ``field[i0] * w0 + field[i1] * w1`` with the second product rounded to float32 first (the
    kernel's ``t1 * w1``) and the first exact (float32 x float32 fits in float64)."""
    shape = [1] * field.ndim
    shape[axis] = -1
    upper = np.take(field, i1, axis=axis)
    upper *= w1.reshape(shape)
    acc = np.take(field, i0, axis=axis).astype(np.float64)
    acc *= w0.reshape(shape)
    acc += upper
    return acc


def _box_weights(n_in: int, n_out: int, sl: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    i0, i1, w0, w1 = trilinear_weights(n_in, n_out)
    return i0[sl], i1[sl], w0[sl], w1[sl]


def upsample_twice(coarse: torch.Tensor, factors: Sequence[int]) -> torch.Tensor:
    """``interpolate(coarse, size=(n - 1) * factor + 1, mode="trilinear", align_corners=True)`` for
    per-axis factors 1 or 2 (3D tensor, float32, any device), as copies and pairwise means."""
    out = coarse
    for axis in (2, 1, 0):  # torch's order; each step rounds to float32 as the kernel does
        n = out.shape[axis]
        if int(factors[axis]) == 1 or n < 2:
            continue
        if int(factors[axis]) != 2:
            raise ValueError(f"upsample_twice: factor {factors[axis]} along axis {axis}; expected 1 or 2")
        shape = list(out.shape)
        shape[axis] = 2 * n - 1
        up = out.new_empty(shape)
        even = [slice(None)] * 3
        odd = [slice(None)] * 3
        even[axis] = slice(0, None, 2)
        odd[axis] = slice(1, None, 2)
        up[tuple(even)] = out
        up[tuple(odd)] = (out.narrow(axis, 0, n - 1) + out.narrow(axis, 1, n - 1)) * 0.5
        out = up
    return out
