"""Reading label maps into :class:`MapSummary` (volumes, centroids, contacts) for ``anatomix evaluate``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anatomix.errors import AnatomixError, InputError
from anatomix import io
from anatomix.io import LABEL_SUFFIXES, resample_label_map


class EvaluationError(InputError):
    """Bad inputs to ``anatomix evaluate`` (one line per problem: file, expected, found)."""

    def __init__(self, problems: list[str], what: str = "evaluation inputs") -> None:
        super().__init__(problems, what)


class EvaluationWarning(UserWarning):
    """Inputs that evaluate but may not compare like with like (``anatomix evaluate`` prints it)."""


@dataclass(frozen=True)
class Settings:
    """How maps are compared. Lengths in mm.

    Attributes:
        eval_spacing_mm: isotropic spacing of the evaluation grid (centroids, contacts).
        contact_tolerance_mm: largest surface gap counted as contact; None = one evaluation voxel.
        shrinkage: weight of the isotropic target in the covariance regularisation (0..1).
        min_std_mm: standard deviation added on every axis of each pair covariance.
        min_log_volume_std: floor of the real log-volume standard deviation.
        min_real_support: pairs/organs need at least this many real subjects to be scored.
    """

    eval_spacing_mm: float = 2.0
    contact_tolerance_mm: float | None = None
    shrinkage: float = 0.3
    min_std_mm: float = 5.0
    min_log_volume_std: float = 0.1
    min_real_support: int = 2

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.eval_spacing_mm) and 0.5 <= self.eval_spacing_mm <= 10.0):
            problems.append(f"--spacing-mm: expected an evaluation grid spacing from 0.5 to 10 mm, "
                            f"found {self.eval_spacing_mm!r}")
        t = self.contact_tolerance_mm
        if t is not None and not (math.isfinite(t) and 0.0 <= t <= 50.0):
            problems.append(f"--contact-tolerance-mm: expected a surface gap from 0 to 50 mm, found {t!r}")
        if problems:
            raise EvaluationError(problems, what="evaluation settings")

    @property
    def tolerance_mm(self) -> float:
        return float(self.eval_spacing_mm if self.contact_tolerance_mm is None else self.contact_tolerance_mm)

    def as_dict(self) -> dict[str, Any]:
        return {
            "eval_spacing_mm": self.eval_spacing_mm,
            "contact_tolerance_mm": self.tolerance_mm,
            "covariance_shrinkage": self.shrinkage,
            "covariance_min_std_mm": self.min_std_mm,
            "min_log_volume_std": self.min_log_volume_std,
            "min_real_support": self.min_real_support,
        }


@dataclass(frozen=True)
class MapSummary:
    """Everything evaluation needs from one label map, computed once.

    Attributes:
        case_id: file name without its image suffix.
        source: the file it came from.
        spacing_mm: original voxel spacing.
        volumes_ml: organ -> volume in ml (original grid).
        centroids_mm: organ -> centroid (3,) in RAS world mm (evaluation grid).
        contacts: organ pairs touching (surface gap <= tolerance on the evaluation grid).
        truncated: organs touching the border of the field of view.
    """

    case_id: str
    source: str
    spacing_mm: tuple[float, float, float]
    volumes_ml: dict[str, float]
    centroids_mm: dict[str, tuple[float, float, float]]
    contacts: frozenset[frozenset[str]]
    truncated: frozenset[str] = field(default_factory=frozenset)

    @property
    def organs(self) -> list[str]:
        return sorted(self.volumes_ml)

    def restricted(self, organs: Iterable[str]) -> MapSummary:
        """The summary of only ``organs`` (volumes, centroids, contacts among them, truncation)."""
        keep = set(organs)
        return MapSummary(
            case_id=self.case_id, source=self.source, spacing_mm=self.spacing_mm,
            volumes_ml={o: v for o, v in self.volumes_ml.items() if o in keep},
            centroids_mm={o: c for o, c in self.centroids_mm.items() if o in keep},
            contacts=frozenset(p for p in self.contacts if p <= keep),
            truncated=frozenset(self.truncated & keep))


# ---- label tables ------------------------------------------------------------------------------


def resolve_label_table(spec: str | Path | Mapping[Any, Any] | None) -> dict[int, str] | None:
    """A label table (value -> canonical organ) from a preset name, a JSON/YAML file or a mapping.

    Files may map values to names or names to values (nnU-Net ``dataset.json`` style, also the
    whole ``dataset.json`` with its ``labels`` key); see :func:`anatomix.label_tables.load_label_table`.
    ``None`` returns ``None`` (use the names embedded in each file).

    Raises:
        EvaluationError: unknown preset / unreadable file / unknown organ names (all listed).
    """
    from anatomix.label_tables import load_label_table

    if spec is None:
        return None
    try:
        return load_label_table(spec, option="label table")
    except InputError as exc:
        raise EvaluationError(exc.problems) from None


# ---- one label map -> MapSummary ---------------------------------------------------------------


def _nearest_indices(n: int, spacing: float, target: float) -> np.ndarray:
    """Source indices of a nearest-neighbour resampling of ``n`` voxels from ``spacing`` to ``target``."""
    length = (n - 1) * spacing
    m = int(math.floor(length / target + 1e-9)) + 1
    idx = np.rint(np.arange(m) * (target / spacing)).astype(np.int64)
    return np.clip(idx, 0, n - 1)


def summarise_label_map(
    array: np.ndarray,
    spacing_mm: Sequence[float],
    origin_mm: Sequence[float],
    names: Mapping[int, str],
    case_id: str,
    *,
    source: str = "",
    settings: Settings = Settings(),
) -> MapSummary:
    """Summarise one RAS-oriented label map (volumes, centroids, contacts, truncation).

    Args:
        array: integer labels (X, Y, Z), axes along world +x (Right), +y (Anterior), +z (Superior).
        spacing_mm: voxel spacing (3,), mm.
        origin_mm: RAS world position (3,) of voxel [0, 0, 0]'s centre, mm.
        names: label value -> canonical organ name; values not in it raise.
        case_id: name of the case in reports.
        source: file it came from (for messages).
        settings: evaluation grid and contact tolerance.

    Raises:
        EvaluationError: label values that ``names`` does not name, or no named organ present.
    """
    from anatomix import relations

    where = source or case_id
    lm = np.asarray(array)
    if lm.ndim not in (3, 4):
        raise EvaluationError([f"{where}: expected a 3D label map; found {lm.ndim} dimensions {lm.shape}"])
    layered = lm.ndim == 4  # overlapping segments: (x, y, z, layers), values unique across layers
    if not np.issubdtype(lm.dtype, np.integer):
        if lm.dtype == np.bool_ or np.all(np.mod(lm, 1) == 0):
            lm = lm.astype(np.int64)
        else:
            raise EvaluationError([f"{where}: expected integer label values; found non-integer values"])
    if lm.size and lm.min() < 0:
        raise EvaluationError([f"{where}: expected non-negative label values; found {int(lm.min())}"])
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    origin = np.asarray(origin_mm, dtype=np.float64)
    fg = lm != 0
    if layered:
        fg = fg.any(axis=3)
    if not fg.any():
        raise EvaluationError([f"{where}: expected at least one labelled organ; found an empty label map"])
    lo = [int(np.flatnonzero(fg.any(axis=tuple(j for j in range(3) if j != k)))[0]) for k in range(3)]
    hi = [int(np.flatnonzero(fg.any(axis=tuple(j for j in range(3) if j != k)))[-1]) + 1 for k in range(3)]
    del fg
    crop = lm[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    layers = [crop[..., k] for k in range(crop.shape[3])] if layered else [crop]
    vols: dict[int, float] = {}
    for layer in layers:
        for v, ml in relations.volumes_ml(layer, spacing).items():
            vols[v] = vols.get(v, 0.0) + ml
    unknown = sorted(v for v in vols if v not in names)
    if unknown:
        known = ", ".join(f"{k}={v}" for k, v in sorted(names.items())[:20])
        raise EvaluationError([
            f"{where}: expected label values named by the label table ({known}"
            f"{', ...' if len(names) > 20 else ''}); found unnamed values {unknown[:20]} "
            "(wrong --*-labels preset or label file?)"
        ])
    # organs touching the field-of-view border
    faces = [lm[0], lm[-1], lm[:, 0], lm[:, -1], lm[:, :, 0], lm[:, :, -1]]
    border: set[int] = set()
    for f in faces:
        border.update(int(v) for v in np.unique(f) if v != 0)
    # the crop onto the isotropic evaluation grid (io.resample_label_map: thin organs kept)
    target = float(settings.eval_spacing_mm)
    n_out = [len(_nearest_indices(crop.shape[k], float(spacing[k]), target)) for k in range(3)]
    res = [resample_label_map(layer, spacing.tolist(), (0.0, 0.0, 0.0), (target,) * 3, (0.0, 0.0, 0.0), n_out)
           for layer in layers]
    grid = np.stack(res, axis=3) if layered else res[0]
    grid_origin = origin + np.asarray(lo, dtype=np.float64) * spacing
    grid_layers = [grid[..., k] for k in range(grid.shape[3])] if layered else [grid]
    cents: dict[int, np.ndarray] = {}
    for layer in grid_layers:
        cents.update(relations.centroids_mm(layer, target, grid_origin))
    # organs too small to survive resampling: centroid on the original crop
    for v in vols:
        if v not in cents:
            src = next(layer for layer in layers if (layer == v).any())
            cents[v] = relations.centroid_mm(src == v, spacing, grid_origin)
    flat = grid_layers[0].copy()
    overlapping: set[frozenset[int]] = set()
    for layer in grid_layers[1:]:
        both = (layer != 0) & (flat != 0)
        if both.any():
            codes = np.unique(np.stack([layer[both], flat[both]], axis=1), axis=0)
            overlapping.update(frozenset((int(a), int(b))) for a, b in codes)
        empty = flat == 0
        flat[empty] = layer[empty]
    touching = relations.contacts(flat, target, settings.tolerance_mm) | overlapping

    # merge labels naming the same organ (e.g. two values mapped to one name)
    volumes: dict[str, float] = {}
    wsum: dict[str, np.ndarray] = {}
    for v, ml in vols.items():
        organ = names[v]
        volumes[organ] = volumes.get(organ, 0.0) + ml
        wsum[organ] = wsum.get(organ, np.zeros(3)) + ml * np.asarray(cents[v], dtype=np.float64)
    centroids = {o: tuple(float(c) for c in wsum[o] / volumes[o]) for o in volumes}
    pairs = set()
    for pair in touching:
        a, b = (names[int(v)] for v in pair)
        if a != b:
            pairs.add(frozenset((a, b)))
    return MapSummary(
        case_id=case_id,
        source=source,
        spacing_mm=tuple(float(s) for s in spacing),  # type: ignore[arg-type]
        volumes_ml=volumes,
        centroids_mm=centroids,  # type: ignore[arg-type]
        contacts=frozenset(pairs),
        truncated=frozenset(names[v] for v in border if v in names),
    )


_SUFFIXES = LABEL_SUFFIXES + (".nhdr",)  # io's list (longest first), plus NRRD headers


def _case_id(path: Path) -> str:
    name = path.name
    for suf in _SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def load_label_set(
    inputs: str | Path | Sequence[str | Path],
    labels: str | Path | Mapping[Any, Any] | None = None,
    *,
    settings: Settings = Settings(),
    what: str = "label maps",
    progress: Callable[[str], None] | None = None,
) -> list[MapSummary]:
    """Read and summarise every label map under ``inputs`` (files and/or folders).

    Args:
        inputs: files or folders (``anatomix.io.find_label_maps`` expands folders).
        labels: preset name, label file or mapping; None uses the names embedded in each file.
        settings: evaluation settings.
        what: name of the set in error messages.
        progress: called with each file name before it is read.

    Raises:
        EvaluationError: missing paths, no label maps, unreadable files, unnamed labels (all listed).
    """
    from anatomix.label_tables import parse_label_entries

    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    problems: list[str] = []
    for p in inputs:
        if not Path(p).exists():
            problems.append(f"{p}: expected a label map file or a folder of them ({what}); found nothing there")
    if problems:
        raise EvaluationError(problems)
    table = resolve_label_table(labels)
    try:
        files = io.find_label_maps([Path(p) for p in inputs])
    except AnatomixError as exc:
        raise EvaluationError([f"{', '.join(map(str, inputs))}: {exc}"]) from exc
    if not files:
        raise EvaluationError([f"{', '.join(map(str, inputs))}: expected label maps ({what}: .nii.gz, .nii, "
                               ".nrrd, .seg.nrrd, .mha, DICOM); found none"])
    out: list[MapSummary] = []
    seen: dict[str, int] = {}
    for f in files:
        f = Path(f)
        if progress is not None:
            progress(f.name)
        try:
            vol = io.read_label_map(f)
        except InputError as exc:  # io's problems already name the file, expected and found
            problems.extend(exc.problems)
            continue
        except OSError as exc:  # e.g. permission denied while reading an embedded-name header
            problems.append(f"{f}: expected a readable label map; found {type(exc).__name__}: {exc}")
            continue
        names = table
        if names is None:
            embedded = getattr(vol, "names", None)
            if not embedded:
                problems.append(f"{f}: expected label names (embedded in the file, or a preset / label "
                                f"file via the labels option); found none")
                continue
            sub: list[str] = []
            parsed, _ = parse_label_entries({int(k): str(v) for k, v in embedded.items()}, str(f), sub,
                                            strict=False)
            names = {v: n for v, n in parsed.items() if n is not None}
            if sub:
                problems.extend(sub)
                continue
        try:
            case = _case_id(f)
            seen[case] = seen.get(case, 0) + 1
            if seen[case] > 1:  # same file name in two folders
                case = f"{case}_{seen[case]}"
            out.append(summarise_label_map(vol.array, vol.spacing_mm, vol.origin_mm, names,
                                           case, source=str(f), settings=settings))
        except EvaluationError as exc:
            problems.extend(exc.problems)
    if problems:
        raise EvaluationError(problems)
    return out


def load_synthetic_set(
    folder: str | Path,
    labels: str | Path | Mapping[Any, Any] | None = None,
    *,
    settings: Settings = Settings(),
    progress: Callable[[str], None] | None = None,
) -> tuple[list[MapSummary], dict[str, dict[str, Any]]]:
    """Read an ``anatomix synth`` output folder (or any folder / files of label maps).

    Label names come from ``labels`` if given, else from the folder's ``dataset.json``, else from
    the files. Records (``records/<case>.json``) are returned by case id where present.

    Returns:
        (summaries, records)
    """
    folder = Path(folder)
    if not folder.exists():
        raise EvaluationError([f"{folder}: expected an `anatomix synth` output folder (labelsTr/, "
                               "dataset.json) or label map files; found nothing there"])
    maps: Path = folder
    records: dict[str, dict[str, Any]] = {}
    if folder.is_dir():
        if (folder / "labelsTr").is_dir():
            maps = folder / "labelsTr"
        if labels is None and (folder / "dataset.json").is_file():
            labels = folder / "dataset.json"
        rec_dir = folder / "records"
        if rec_dir.is_dir():
            for p in sorted(rec_dir.glob("*.json")):
                try:
                    records[p.stem] = json.loads(p.read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError) as exc:
                    raise EvaluationError([f"{p}: expected a JSON case record; found unreadable text ({exc})"])
    summaries = load_label_set(maps, labels, settings=settings, what="synthetic label maps", progress=progress)
    return summaries, records
