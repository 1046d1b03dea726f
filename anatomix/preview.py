"""Preview of a synthesis output folder: a PNG montage and an optional 3D mesh of one case.

``anatomix preview DIR --out preview.png [--cases 4] [--mesh scene.glb]``: for a few cases, the
plain axial image, then axial, coronal and sagittal slices through the centre of the labelled
organs, labels as thin contours over a faint fill, radiological convention (axial and coronal:
subject's right on the image left; sagittal: anterior on the left; anterior / superior up),
orientation letters on each panel, anatomical colours (:data:`ORGAN_COLOURS`). ``--mesh`` exports
the organs of one case as coloured triangle meshes (scikit-image marching cubes, trimesh; glb/ply/obj/stl by suffix).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from anatomix.errors import AnatomixError

__all__ = ["MAX_LEGEND_ENTRIES", "ORGAN_COLOURS", "display_range", "export_mesh", "label_colours", "legend_layout",
           "organ_colours", "preview_dataset"]

# Anatomical colours (RGB 0-255), close to 3D Slicer's / TotalSegmentator's conventions, chosen so
# that neighbouring organs are clearly distinct (one colour table for the montage and the mesh).
ORGAN_COLOURS: dict[str, tuple[int, int, int]] = {
    # every pair of organs that touch in graphs/abdomen.yaml, and each left/right pair, differs
    # by at least 25 CIE-Lab units (tests/test_preview_fixes.py checks it)
    "liver": (177, 77, 51),                 # brown-red
    "spleen": (157, 108, 162),              # purple
    "kidney_right": (240, 170, 30),         # amber
    "kidney_left": (40, 180, 170),          # teal
    "gallbladder": (80, 200, 60),           # green
    "esophagus": (211, 171, 143),           # tan
    "stomach": (255, 160, 200),             # pink
    "aorta": (200, 0, 0),                   # arterial red
    "inferior_vena_cava": (40, 70, 230),    # venous blue
    "portal_splenic_vein": (0, 200, 255),   # cyan
    "pancreas": (250, 240, 60),             # yellow
    "adrenal_gland_right": (190, 0, 220),   # violet
    "adrenal_gland_left": (255, 110, 0),    # orange
    "duodenum": (100, 60, 20),              # dark brown
    "colon": (110, 150, 200),
    "small_bowel": (190, 140, 200),
    "urinary_bladder": (140, 200, 255),
    "lesion": (255, 255, 255),              # white
}


def label_colours(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 distinct colours by label value (golden-ratio hues); 0 is black."""
    import colorsys

    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(1, n):
        h = (i * 0.61803398875) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.75, 0.95)
        out[i] = (int(r * 255), int(g * 255), int(b * 255))
    return out


def organ_colours(names: dict[int, str] | None = None, n: int = 256) -> np.ndarray:
    """(n, 3) uint8 colours by label value: the anatomical colour of the label's organ name
    (:data:`ORGAN_COLOURS`), else a distinct fallback colour; 0 is black."""
    out = label_colours(n)
    for v, name in (names or {}).items():
        if 0 < int(v) < n and name in ORGAN_COLOURS:
            out[int(v)] = ORGAN_COLOURS[name]
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


def _read_image(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Intensity image (float32, RAS) and its spacing (oblique inputs: linear resampling)."""
    from anatomix.io import read_image

    v = read_image(path)
    return np.asarray(v.array), _spacing3(v.spacing_mm)


def _read_labels(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Integer label map (RAS; oblique inputs resampled nearest-neighbour, never interpolated)
    and its spacing."""
    from anatomix.io import read_label_map

    v = read_label_map(path)
    return np.asarray(v.array), _spacing3(v.spacing_mm)


def _spacing3(spacing_mm: Sequence[float]) -> tuple[float, float, float]:
    """A 3D volume's (x, y, z) voxel size in mm (the readers return 3D volumes only)."""
    sx, sy, sz = (float(s) for s in spacing_mm)
    return sx, sy, sz


def _upsample(a: np.ndarray, k: int, order: int) -> np.ndarray:
    from scipy import ndimage

    return a.repeat(k, 0).repeat(k, 1) if order == 0 else ndimage.zoom(a, k, order=order)


def display_range(image: np.ndarray) -> tuple[float, float]:
    """Grey-level range of an image for display: [0, 1] for images already in [0, 1] (the CT
    window of anatomy synthesis), else the image's own 0.5-99.5 percentiles (FDIF's 0..128)."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [0.5, 99.5]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


#: above this many classes in view, the montage names the class count instead of a legend
MAX_LEGEND_ENTRIES = 24


def _overlay(img2d: np.ndarray, lab2d: np.ndarray | None, colours: np.ndarray, alpha: float = 0.2,
             contours: bool = True) -> np.ndarray:
    """Grey image with a low-alpha colour fill and thin full-colour contours of each label."""
    g = np.clip(img2d, 0.0, 1.0)
    rgb = np.repeat(g[..., None], 3, axis=-1)
    if lab2d is None:
        return rgb
    m = lab2d > 0
    rgb[m] = (1 - alpha) * rgb[m] + alpha * colours[lab2d[m]] / 255.0
    if contours:
        edge = np.zeros_like(m)
        edge[1:, :] |= lab2d[1:, :] != lab2d[:-1, :]
        edge[:, 1:] |= lab2d[:, 1:] != lab2d[:, :-1]
        edge[:-1, :] |= edge[1:, :].copy()  # two display pixels (2/3 of a voxel): visible, thin
        edge &= m
        rgb[edge] = colours[lab2d[edge]] / 255.0
    return rgb


# (title, fixed axis, (left, right, top, bottom) letters) in radiological convention
_VIEWS = (("axial", 2, ("R", "L", "A", "P")),
          ("coronal", 1, ("R", "L", "S", "I")),
          ("sagittal", 0, ("A", "P", "S", "I")))


def _display(a: np.ndarray) -> np.ndarray:
    """A (first, second) in-plane slice of a RAS array -> display rows/columns, radiological:
    rows = second axis decreasing (anterior / superior up), columns = first axis decreasing
    (subject's right on the left in axial and coronal; anterior on the left in sagittal)."""
    return np.flip(np.swapaxes(a, 0, 1), axis=(0, 1))


def _centre(lab: np.ndarray) -> np.ndarray:
    """Voxel index of the centre of the labelled organs (mean of the organ centroids, each organ
    counting once, so a large liver does not pull the slices off the small organs)."""
    values = [int(v) for v in np.unique(lab) if v > 0]
    if not values:
        return np.asarray(lab.shape) // 2
    from scipy import ndimage

    cents = np.asarray(ndimage.center_of_mass(np.ones_like(lab), lab, values))
    return np.clip(np.round(cents.mean(axis=0)).astype(int), 0, np.asarray(lab.shape) - 1)


def preview_dataset(folder: str | Path, out: str | Path, cases: int = 4,
                    mesh: str | Path | None = None) -> Path:
    """Write a montage PNG: one row per case (``cases`` rows); columns: the plain axial image,
    then axial, coronal and sagittal slices through the centre of the labelled organs with the
    labels as thin coloured contours over a faint fill. Radiological convention, orientation
    letters on every panel, anatomical colours (:data:`ORGAN_COLOURS`) and a legend.

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
    names = _label_names(folder)
    colours = organ_colours(names)
    chosen = found[: max(1, cases)]
    up = 3  # display upsampling: contours one third of a voxel thick
    fig, axes = plt.subplots(len(chosen), 4, figsize=(12, 3.2 * len(chosen)), squeeze=False,
                             facecolor="black")
    present: set[int] = set()
    for row, (case, im_path, lab_path) in enumerate(chosen):
        img, sp = _read_image(im_path)
        lo, hi = display_range(img)  # each image by its own range (FDIF: 0..128)
        img = (img - lo) / (hi - lo)
        lab = _read_labels(lab_path)[0].astype(np.int64)
        present.update(int(v) for v in np.unique(lab) if v > 0)
        c = _centre(lab)
        panels = [("image", 2, _VIEWS[0][2], False)] + [(t, ax, letters, True) for t, ax, letters in _VIEWS]
        for col, (title, axis, letters, labelled) in enumerate(panels):
            ax = axes[row, col]
            im2 = _display(np.take(img, c[axis], axis=axis))
            lb2 = _display(np.take(lab, c[axis], axis=axis))
            in_plane = [d for d in range(3) if d != axis]
            aspect = sp[in_plane[1]] / sp[in_plane[0]]
            rgb = _overlay(_upsample(im2, up, 1), _upsample(lb2, up, 0) if labelled else None, colours)
            ax.imshow(rgb, aspect=aspect, interpolation="antialiased")
            ax.set_axis_off()
            where = ("axial" if title == "image" else title) + f" {['x', 'y', 'z'][axis]}={c[axis]}"
            ax.set_title((f"{case}\n" if col == 0 else "\n") + ("image, " if title == "image" else "") + where,
                         fontsize=8, color="white")
            kw = dict(transform=ax.transAxes, color="yellow", fontsize=9, fontweight="bold")
            ax.text(0.02, 0.5, letters[0], ha="left", va="center", **kw)
            ax.text(0.98, 0.5, letters[1], ha="right", va="center", **kw)
            ax.text(0.5, 0.98, letters[2], ha="center", va="top", **kw)
            ax.text(0.5, 0.02, letters[3], ha="center", va="bottom", **kw)
    bottom = legend_layout(fig, plt, present, names, colours, len(chosen))
    fig.tight_layout(rect=(0, bottom, 1, 1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_png(fig, out)
    plt.close(fig)
    if mesh is not None:
        case, _, lab_path = chosen[0]
        lab, sp = _read_labels(lab_path)
        export_mesh(lab.astype(np.int64), sp, mesh, names)
    return out


def legend_layout(fig: Any, plt: Any, present: set[int], names: dict[int, str], colours: np.ndarray,
                  rows: int) -> float:
    """Draw the legend below the panels (or, beyond :data:`MAX_LEGEND_ENTRIES` classes, one line
    with the class count); returns the figure fraction it takes at the bottom."""
    values = sorted(present)
    height_in = 3.2 * rows
    if len(values) > MAX_LEGEND_ENTRIES:
        fig.text(0.5, 0.01, f"{len(values)} classes in these cases (labels {values[0]}..{values[-1]}); "
                 "too many for a legend", ha="center", va="bottom", color="white", fontsize=9)
        return 0.35 / height_in
    ncol = min(6, max(1, len(values)))
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[v] / 255.0) for v in values]
    leg = fig.legend(handles, [names.get(v, str(v)) for v in values], loc="lower center", ncol=ncol,
                     fontsize=8, facecolor="black", edgecolor="grey")
    for t in leg.get_texts():
        t.set_color("white")
    lines = -(-len(values) // ncol)
    return (0.25 + 0.2 * lines) / height_in


def _save_png(fig: Any, out: Path) -> None:
    """Save a figure as a 256-colour palette PNG (octree: keeps every label colour exact, slight
    banding in smooth greys; a quarter of the RGB file's size, small enough for a README)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, facecolor="black", format="png")
    buf.seek(0)
    with Image.open(buf) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)


def _label_names(folder: Path) -> dict[int, str]:
    ds = folder / "dataset.json"
    if not ds.exists():
        return {}
    try:
        return {int(v): str(k) for k, v in json.loads(ds.read_text()).get("labels", {}).items()}
    except (ValueError, AttributeError, TypeError):
        return {}


def export_mesh(label: np.ndarray, spacing_mm: Sequence[float], out: str | Path,
                names: dict[int, str] | None = None) -> Path:
    """Export each label of a label map as a coloured mesh (marching cubes) into one scene file."""
    import trimesh
    from skimage.measure import marching_cubes

    colours = organ_colours(names)
    scene = trimesh.Scene()
    for v in sorted(int(x) for x in np.unique(label) if x > 0):
        m = np.pad(label == v, 1)
        if m.sum() < 8:
            continue
        spacing = tuple(float(s) for s in spacing_mm)
        verts, faces, _, _ = marching_cubes(m.astype(np.float32), level=0.5, spacing=spacing)
        rgba = np.append(colours[v], 255).astype(np.uint8)
        tm = trimesh.Trimesh(vertices=verts, faces=faces, face_colors=np.tile(rgba, (len(faces), 1)), process=False)
        scene.add_geometry(tm, node_name=(names or {}).get(v, f"label_{v}"))
    if not scene.geometry:
        raise AnatomixError("the case has no labelled voxel: nothing to mesh")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scene.export(str(out))
    return out
