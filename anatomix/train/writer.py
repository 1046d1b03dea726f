"""Write predicted label maps in the geometry of the input image they came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter

from anatomix import io

__all__ = ["NiftiPredictionWriter", "label_map_to_reference", "write_label_map_like"]


def _strip_suffix(name: str) -> str:
    for s in io.IMAGE_SUFFIXES:
        if name.endswith(s):
            return name[: -len(s)]
    return Path(name).stem


def label_map_to_reference(labels: np.ndarray, affine_ras: np.ndarray, reference: Any) -> Any:
    """Resample a label map (x, y, z) with a RAS affine onto a reference SimpleITK image (nearest).

    Args:
        labels: integer array indexed (i, j, k) along the affine's columns.
        affine_ras: 4x4 voxel -> RAS world mm.
        reference: ``SimpleITK.Image`` whose grid the result takes.

    Returns:
        ``SimpleITK.Image`` (uint8) on the reference grid (:func:`anatomix.io.resample_to_reference`).
    """
    a = np.asarray(affine_ras, dtype=np.float64)
    spacing = tuple(float(x) for x in np.linalg.norm(a[:3, :3], axis=0))
    vol = io.Volume(np.asarray(labels).astype(np.uint8), spacing, tuple(float(x) for x in a[:3, 3]))
    return io.resample_to_reference(vol, reference, nearest=True, affine_ras=a)


def write_label_map_like(labels: np.ndarray, affine_ras: np.ndarray, input_path: str | Path,
                         out_path: str | Path) -> Path:
    """Write ``labels`` resampled onto the grid of the image at ``input_path`` (atomic write).

    ``input_path`` is anything :func:`anatomix.io.read_image_sitk` reads (NIfTI, NRRD, MHA/MHD,
    a DICOM-series folder); the output is NIfTI (or NRRD/MHA by ``out_path``'s suffix) with the
    input's size, spacing, origin and direction.
    """
    import SimpleITK as sitk

    reference = io.read_image_sitk(str(input_path))
    out = label_map_to_reference(labels, affine_ras, reference)
    out_path = Path(out_path)
    suffix = ".nii.gz" if out_path.name.endswith(".nii.gz") else out_path.suffix
    return io.atomic_write(out_path, lambda tmp: sitk.WriteImage(out, str(tmp), True), suffix=suffix)


class NiftiPredictionWriter(BasePredictionWriter):
    """Writes ``<output_dir>/<input name>_seg.nii.gz`` for every predicted volume, in the input's geometry.

    Args:
        output_dir: folder for the label maps (created).
        suffix: appended to the input's name.
    """

    def __init__(self, output_dir: str = "predictions", suffix: str = "_seg") -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.suffix = suffix
        self.written: list[Path] = []

    def _out_path(self, src: str) -> Path:
        """``<output_dir>/<name>_seg.nii.gz``; a name already written in this run (``ct.mha`` after
        ``ct.nrrd``) gets its format too (``ct_mha_seg.nii.gz``), so no prediction overwrites another."""
        p = Path(src)
        stem = p.name if p.is_dir() else _strip_suffix(p.name)
        out = Path(self.output_dir) / (stem + self.suffix + ".nii.gz")
        if out in self.written:
            fmt = "dicom" if p.is_dir() else p.name[len(stem):].lstrip(".").replace(".", "_")
            out = Path(self.output_dir) / f"{stem}_{fmt}{self.suffix}.nii.gz"
        return out

    def write_on_batch_end(self, trainer: Any, pl_module: Any, prediction: Any, batch_indices: Sequence[int] | None,
                           batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        preds = prediction["pred"].detach().cpu()
        image = prediction["image"]
        for b in range(preds.shape[0]):
            meta = image[b].meta if hasattr(image[b], "meta") else image.meta
            src = meta["filename_or_obj"]
            src = src[b] if isinstance(src, (list, tuple)) else src
            affine = image[b].affine if hasattr(image[b], "affine") else meta["affine"]
            affine = np.asarray(affine.cpu() if hasattr(affine, "cpu") else affine, dtype=np.float64)
            if affine.ndim == 3:
                affine = affine[b]
            out = write_label_map_like(preds[b, 0].numpy(), affine, src, self._out_path(str(src)))
            self.written.append(out)
