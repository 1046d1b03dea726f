"""Preview of a synthesis output folder: a PNG montage and an optional 3D mesh of one case.

``anatomix preview DIR --out preview.png [--cases 4] [--mesh scene.glb]``: for a few cases,
axial, coronal and sagittal slices through the labelled centre of mass, image in grey with the
labels overlaid in colour. ``--mesh`` exports the organs of one case as coloured triangle meshes
(scikit-image marching cubes, trimesh; glb/ply/obj/stl by suffix).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from anatomix.errors import AnatomixError

__all__ = ["export_mesh", "label_colours", "preview_dataset"]


def label_colours(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 distinct colours; 0 is black."""
    import colorsys

    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(1, n):
        h = (i * 0.61803398875) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.75, 0.95)
        out[i] = (int(r * 255), int(g * 255), int(b * 255))
    return out


def _cases(folder: Path) -> list[tuple[str, Path, Path]]:
    imgs = sorted((folder / "imagesTr").glob("*_0000.nii.gz")) if (folder / "imagesTr").is_dir() else []
    out = []
    for im in imgs:
        case = im.name[: -len("_0000.nii.gz")]
        lab = folder / "labelsTr" / f"{case}.nii.gz"
        if lab.exists():
            out.append((case, im, lab))
    return out


def _read(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    try:
        from anatomix.io import read_image

        v = read_image(path)
        return np.asarray(v.array), tuple(v.spacing_mm)
    except ImportError:  # pragma: no cover
        import SimpleITK as sitk

        img = sitk.ReadImage(str(path))
        return np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0)), img.GetSpacing()


def _overlay(img2d: np.ndarray, lab2d: np.ndarray, colours: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    g = np.clip(img2d, 0.0, 1.0)
    rgb = np.repeat(g[..., None], 3, axis=-1)
    m = lab2d > 0
    rgb[m] = (1 - alpha) * rgb[m] + alpha * colours[lab2d[m]] / 255.0
    return rgb


def preview_dataset(folder: str | Path, out: str | Path, cases: int = 4,
                    mesh: str | Path | None = None) -> Path:
    """Write a montage PNG of ``cases`` cases (rows) x axial/coronal/sagittal (columns).

    Raises:
        AnatomixError: no case in ``folder`` (expects imagesTr/ and labelsTr/).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    found = _cases(folder)
    if not found:
        raise AnatomixError(f"{folder}: no synthetic case found (expected imagesTr/*_0000.nii.gz and "
                            "labelsTr/*.nii.gz, as written by `anatomix synth`)")
    names = {}
    ds = folder / "dataset.json"
    if ds.exists():
        try:
            names = {int(v): k for k, v in json.loads(ds.read_text()).get("labels", {}).items()}
        except (ValueError, AttributeError):
            names = {}
    colours = label_colours()
    chosen = found[: max(1, cases)]
    fig, axes = plt.subplots(len(chosen), 3, figsize=(9, 3 * len(chosen)), squeeze=False)
    present: set[int] = set()
    for row, (case, im_path, lab_path) in enumerate(chosen):
        img, sp = _read(im_path)
        lab, _ = _read(lab_path)
        lab = lab.astype(np.int64)
        present.update(int(v) for v in np.unique(lab) if v > 0)
        if (lab > 0).any():
            c = np.round(np.argwhere(lab > 0).mean(axis=0)).astype(int)
        else:
            c = np.asarray(lab.shape) // 2
        views = [
            ("axial", img[:, :, c[2]], lab[:, :, c[2]], sp[1] / sp[0]),
            ("coronal", img[:, c[1], :], lab[:, c[1], :], sp[2] / sp[0]),
            ("sagittal", img[c[0], :, :], lab[c[0], :, :], sp[2] / sp[1]),
        ]
        for col, (title, im2, lb2, aspect) in enumerate(views):
            ax = axes[row, col]
            # radiological display: anterior / superior up; in axial and coronal views the
            # subject's right (+x) on the left of the picture
            rgb = np.flipud(np.transpose(_overlay(im2, lb2, colours), (1, 0, 2)))
            if title != "sagittal":
                rgb = np.fliplr(rgb)
            ax.imshow(rgb, aspect=aspect, interpolation="nearest")
            ax.set_axis_off()
            ax.set_title(f"{case} {title}" if col == 0 else title, fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[v] / 255.0) for v in sorted(present)]
    fig.legend(handles, [names.get(v, str(v)) for v in sorted(present)], loc="lower center",
               ncol=min(6, max(1, len(handles))), fontsize=7)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    if mesh is not None:
        case, _, lab_path = chosen[0]
        lab, sp = _read(lab_path)
        export_mesh(lab.astype(np.int64), sp, mesh, names)
    return out


def export_mesh(label: np.ndarray, spacing_mm: Sequence[float], out: str | Path,
                names: dict[int, str] | None = None) -> Path:
    """Export each label of a label map as a coloured mesh (marching cubes) into one scene file."""
    import trimesh
    from skimage.measure import marching_cubes

    colours = label_colours()
    scene = trimesh.Scene()
    for v in sorted(int(x) for x in np.unique(label) if x > 0):
        m = np.pad(label == v, 1)
        if m.sum() < 8:
            continue
        verts, faces, _, _ = marching_cubes(m.astype(np.float32), level=0.5, spacing=tuple(float(s) for s in spacing_mm))
        tm = trimesh.Trimesh(vertices=verts, faces=faces, process=False)
        rgba = np.append(colours[v], 255).astype(np.uint8)
        tm.visual.face_colors = np.tile(rgba, (len(faces), 1))
        scene.add_geometry(tm, node_name=(names or {}).get(v, f"label_{v}"))
    if not scene.geometry:
        raise AnatomixError("the case has no labelled voxel: nothing to mesh")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scene.export(str(out))
    return out
