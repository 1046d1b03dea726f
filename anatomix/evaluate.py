"""Anatomical realism of label maps, measured against real ones (``anatomix evaluate``).

A set of synthetic label maps is compared with a set of real ones, organ by organ and pair by
pair, and the same scores are computed for the real set against itself (leave-one-out), which
gives the scale: a perfect synthesizer scores like a real subject.

Every label map is read once (``anatomix.io.read_label_map``: RAS+ (x, y, z) arrays, world mm),
cropped to its foreground and summarised into a :class:`MapSummary` (organ volumes on the
original grid; centroids and the contact graph on a common isotropic evaluation grid, by default
2 mm, nearest-neighbour), so maps of any spacing or orientation are compared in the same units and
"touching" means the same thing for all of them. All measurements are ``anatomix.relations``'.

Scores (per case, then summarised per set):

- presence and volume (ml): per organ; a case's volume score is ``|z|`` of its log volume under the
  real log-volume distribution (std floored at ``min_log_volume_std``);
- pairwise relative position: for each organ pair (a, b) the centroid offset ``c_b - c_a`` (mm,
  RAS); real subjects give a mean and a covariance, regularised for few subjects
  (``(1 - shrinkage) * S + shrinkage * tr(S)/3 * I + min_std_mm^2 * I``); each case gets the
  Mahalanobis distance of its offset per pair; summaries are medians per pair, per case and overall;
- contact graph: organ pairs whose surface gap is at most ``contact_tolerance_mm`` (default one
  voxel of the evaluation grid); compared with the real majority graph (pairs touching in at least
  half the real subjects that have both organs): precision, recall, F1 over the organ pairs both
  present in the case;
- laterality and direction errors: sided organs on the wrong side of the midline (the spine if
  labelled, else the midpoint of aorta and inferior vena cava, else the aorta, else the mean of all
  organ centroids) and a short list of anatomical rules (:data:`DIRECTION_RULES`) on centroids;
- impossible overlaps: hard constraint violations read from the synthetic records' constraint
  reports (``records/<case>.json``), where present (a label map cannot show an overlap itself).

The real-vs-real baseline refits the reference without subject ``i`` and scores subject ``i``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from anatomix.errors import AnatomixError, InputError
from anatomix.io import LABEL_SUFFIXES

__all__ = [
    "DIRECTION_RULES",
    "EvaluationError",
    "MapSummary",
    "ReferenceModel",
    "Settings",
    "compare",
    "evaluate",
    "fit_reference",
    "load_label_set",
    "load_synthetic_set",
    "midline_x",
    "plot_report",
    "plot_reports",
    "resolve_label_table",
    "score_set",
    "summarise_label_map",
    "write_report",
]

REPORT_FORMAT_VERSION = 1

#: Anatomical direction rules checked on centroids (a, direction, b), as in organ graphs:
#: "a lies <direction> of b". They hold in normal adult abdominal anatomy (checked on FLARE22).
DIRECTION_RULES: tuple[tuple[str, str, str], ...] = (
    ("kidney_left", "left_of", "kidney_right"),
    ("spleen", "left_of", "liver"),
    ("stomach", "left_of", "liver"),
    ("aorta", "left_of", "inferior_vena_cava"),
    ("liver", "above", "kidney_right"),
    ("spleen", "above", "kidney_left"),
    ("adrenal_gland_right", "above", "kidney_right"),
    ("adrenal_gland_left", "above", "kidney_left"),
    ("esophagus", "above", "pancreas"),
    ("pancreas", "anterior_to", "aorta"),
    ("kidney_right", "posterior_to", "gallbladder"),
)

#: Organs that lie on one side of the midline although their names carry no side.
MIDLINE_SIDE: Mapping[str, str] = {
    "liver": "right",
    "gallbladder": "right",
    "inferior_vena_cava": "right",
    "spleen": "left",
    "stomach": "left",
}


class EvaluationError(InputError):
    """Bad inputs to ``anatomix evaluate`` (one line per problem: file, expected, found)."""

    def __init__(self, problems: list[str], what: str = "evaluation inputs") -> None:
        super().__init__(problems, what)


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


# ---- label tables ------------------------------------------------------------------------------


def resolve_label_table(spec: str | Path | Mapping[Any, Any] | None) -> dict[int, str] | None:
    """A label table (value -> canonical organ) from a preset name, a JSON/YAML file or a mapping.

    Files may map values to names or names to values (nnU-Net ``dataset.json`` style, also the
    whole ``dataset.json`` with its ``labels`` key); see :func:`anatomix.labels.load_label_table`.
    ``None`` returns ``None`` (use the names embedded in each file).

    Raises:
        EvaluationError: unknown preset / unreadable file / unknown organ names (all listed).
    """
    from anatomix.labels import load_label_table

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
    border = set()
    for f in faces:
        border.update(int(v) for v in np.unique(f) if v != 0)
    # nearest-neighbour resampling of the crop onto the isotropic evaluation grid
    target = float(settings.eval_spacing_mm)
    ix = [_nearest_indices(crop.shape[k], float(spacing[k]), target) for k in range(3)]
    grid = crop[np.ix_(*ix)]
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
    from anatomix import io
    from anatomix.labels import parse_label_entries

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


# ---- reference model from real subjects ---------------------------------------------------------


def _pair_key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def _pair_name(pair: tuple[str, str]) -> str:
    return f"{pair[0]}|{pair[1]}"


@dataclass
class ReferenceModel:
    """Distributions of the real subjects that cases are scored against.

    Attributes:
        n_subjects: number of real subjects.
        organs: organs present in at least ``min_real_support`` subjects.
        presence: organ -> share of real subjects with it.
        log_volume: organ -> (mean, std) of ln(volume ml), std floored.
        offsets: pair (a, b) with a < b -> (mean (3,), regularised covariance (3,3), n subjects);
            the offset is ``centroid_b - centroid_a`` in mm.
        contact_rate: pair -> share of real subjects (with both organs) where they touch.
        majority: pairs touching in at least half of those subjects.
    """

    n_subjects: int
    organs: list[str]
    presence: dict[str, float]
    log_volume: dict[str, tuple[float, float]]
    offsets: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, int]]
    contact_rate: dict[tuple[str, str], float]
    majority: set[tuple[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {
            "n_subjects": self.n_subjects,
            "organs": self.organs,
            "presence": self.presence,
            "volume_ml_geometric_mean": {o: math.exp(m) for o, (m, _) in self.log_volume.items()},
            "log_volume_std": {o: s for o, (_, s) in self.log_volume.items()},
            "centroid_offsets_mm": {
                _pair_name(p): {"mean": m.tolist(), "cov": c.tolist(), "n": n}
                for p, (m, c, n) in sorted(self.offsets.items())
            },
            "contact_rate": {_pair_name(p): r for p, r in sorted(self.contact_rate.items())},
            "majority_contact_graph": sorted(_pair_name(p) for p in self.majority),
        }


def fit_reference(real: Sequence[MapSummary], settings: Settings = Settings()) -> ReferenceModel:
    """Fit the reference distributions on real subjects (any number >= 1; see Settings)."""
    n = len(real)
    counts: dict[str, int] = {}
    for s in real:
        for o in s.volumes_ml:
            counts[o] = counts.get(o, 0) + 1
    support = min(settings.min_real_support, n)
    organs = sorted(o for o, c in counts.items() if c >= support)
    presence = {o: counts.get(o, 0) / n for o in organs}
    log_volume: dict[str, tuple[float, float]] = {}
    for o in organs:
        lv = np.log([s.volumes_ml[o] for s in real if o in s.volumes_ml])
        sd = float(lv.std(ddof=1)) if lv.size > 1 else 0.0
        log_volume[o] = (float(lv.mean()), max(sd, settings.min_log_volume_std))
    offsets: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, int]] = {}
    contact_rate: dict[tuple[str, str], float] = {}
    for i, a in enumerate(organs):
        for b in organs[i + 1:]:
            both = [s for s in real if a in s.volumes_ml and b in s.volumes_ml]
            if len(both) < support:
                continue
            d = np.array([np.subtract(s.centroids_mm[b], s.centroids_mm[a]) for s in both])
            mean = d.mean(axis=0)
            cov = np.cov(d, rowvar=False, ddof=1) if len(both) > 1 else np.zeros((3, 3))
            iso = np.trace(cov) / 3.0
            reg = (1 - settings.shrinkage) * cov + settings.shrinkage * iso * np.eye(3)
            reg = reg + settings.min_std_mm ** 2 * np.eye(3)
            offsets[(a, b)] = (mean, reg, len(both))
            contact_rate[(a, b)] = sum(frozenset((a, b)) in s.contacts for s in both) / len(both)
    majority = {p for p, r in contact_rate.items() if r >= 0.5}
    return ReferenceModel(n, organs, presence, log_volume, offsets, contact_rate, majority)


# ---- scoring -------------------------------------------------------------------------------------


def midline_x(centroids: Mapping[str, Sequence[float]]) -> tuple[float, str]:
    """World x (mm) of the body midline from the anatomy, and how it was found.

    The spine (vertebrae / spinal cord) if labelled; else the midpoint of the aorta and the inferior
    vena cava (they straddle the spine); else the aorta; else the mean of all organ centroids.
    """
    spine = [c[0] for o, c in centroids.items() if o.startswith("vertebrae") or o in ("spinal_cord", "sacrum")]
    if spine:
        return float(np.mean(spine)), "spine"
    if "aorta" in centroids and "inferior_vena_cava" in centroids:
        return float((centroids["aorta"][0] + centroids["inferior_vena_cava"][0]) / 2), "aorta_ivc"
    if "aorta" in centroids:
        return float(centroids["aorta"][0]), "aorta"
    return float(np.mean([c[0] for c in centroids.values()])), "organ_mean"


def _side(organ: str) -> str | None:
    from anatomix.labels import organ_side

    return organ_side(organ) or MIDLINE_SIDE.get(organ)


def swapped_lateral_pairs(summary: MapSummary) -> tuple[list[str], int]:
    """Lateral pairs of one map whose left organ lies right of its mate (RAS: smaller x is the
    subject's left), and how many pairs the map has. A label table that swaps left and right
    (a wrong preset) swaps every pair."""
    from anatomix.labels import mirror_organ, organ_side

    c = summary.centroids_mm
    pairs = [(o, mirror_organ(o)) for o in sorted(c) if organ_side(o) == "left" and mirror_organ(o) in c]
    return [f"{a} at x={c[a][0]:.1f} mm, {b} at x={c[b][0]:.1f} mm" for a, b in pairs
            if c[a][0] > c[b][0]], len(pairs)


def check_real_laterality(real: Sequence[MapSummary], option: str = "--real-labels") -> None:
    """Refuse real maps whose lateral pairs are swapped in most maps (a wrong label preset).

    Raises:
        EvaluationError: at least half of the maps with a left/right pair have every pair
            swapped (left organs at larger x than their right mates).
    """
    with_pairs = [(s, *swapped_lateral_pairs(s)) for s in real]
    with_pairs = [(s, sw, n) for s, sw, n in with_pairs if n]
    bad = [(s, sw) for s, sw, n in with_pairs if len(sw) == n]
    if with_pairs and 2 * len(bad) >= len(with_pairs):
        ex = "; ".join(f"{s.source}: {sw[0]}" for s, sw in bad[:3])
        raise EvaluationError([
            f"{option}: expected left organs on the subject's left (smaller RAS x than their right "
            f"mates), found every left/right pair swapped in {len(bad)} of {len(with_pairs)} real "
            f"maps (e.g. {ex}); the label preset or file names left and right the wrong way round "
            "for these maps: use the preset of the dataset they come from, or a label file"])


def direction_errors(summary: MapSummary) -> list[str]:
    """Laterality and direction rule violations of one case (human-readable, one per error)."""
    from anatomix.relations import direction_margin_mm

    c = summary.centroids_mm
    mid, how = midline_x(c)
    errors: list[str] = []
    for organ in sorted(c):
        side = _side(organ)
        if side is None or (how == "aorta_ivc" and organ == "inferior_vena_cava"):
            continue
        x = c[organ][0]
        if (side == "left" and x >= mid) or (side == "right" and x <= mid):
            errors.append(f"laterality: {organ} ({side}) at x={x:.1f} mm, midline ({how}) x={mid:.1f} mm")
    for a, direction, b in DIRECTION_RULES:
        if a in c and b in c:
            m = direction_margin_mm(c[a], c[b], direction)
            if m <= 0:
                errors.append(f"direction: {a} not {direction} {b} (by {-m:.1f} mm)")
    return errors


def record_violations(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Hard constraint violations from a synthetic record's constraint report (None if absent).

    Reads the list of measured relations (``kind``/``type``/``relation``, ``hard``,
    ``holds``/``satisfied``/``ok``, organs ``a``/``b``, ``value``): the placement Scene's
    ``scene.report`` as ``anatomix synth --graph`` writes it, else a list under ``report``,
    ``constraint_report`` or ``constraints`` at the top level or under ``placement``.
    """
    if not record:
        return None
    entries = None
    for holder in (record.get("scene"), record, record.get("placement")):
        if not isinstance(holder, Mapping):
            continue
        for key in ("report", "constraint_report", "constraints"):
            cand = holder.get(key)
            if isinstance(cand, Mapping):
                cand = cand.get("relations", cand.get("entries", cand.get("items")))
            if isinstance(cand, list) and all(isinstance(e, Mapping) for e in cand):
                entries = cand
                break
        if entries is not None:
            break
    if entries is None:
        return None
    hard = overlaps = checked = 0
    details: list[str] = []
    for e in entries:
        if not isinstance(e, Mapping):
            continue
        ok = next((e[k] for k in ("holds", "satisfied", "ok", "valid") if k in e), None)
        if ok is None:
            continue
        checked += 1
        kind = str(e.get("type", e.get("kind", e.get("relation", "")))).lower()
        is_hard = bool(e.get("hard", kind in ("avoid", "inside", "direction")))
        if not ok and is_hard:
            hard += 1
            if kind in ("avoid", "overlap"):
                overlaps += 1
            details.append(f"{kind} {e.get('a', '?')}-{e.get('b', '?')}: {e.get('value', e.get('measured', '?'))}")
    return {"checked": checked, "hard_violations": hard, "impossible_overlaps": overlaps, "details": details[:20]}


def _score_case(model: ReferenceModel, s: MapSummary, settings: Settings) -> dict[str, Any]:
    known = [o for o in s.volumes_ml if o in model.log_volume]
    vol_z = {o: abs(math.log(s.volumes_ml[o]) - model.log_volume[o][0]) / model.log_volume[o][1] for o in known}
    dists: dict[str, float] = {}
    for (a, b), (mean, cov, _) in model.offsets.items():
        if a in s.centroids_mm and b in s.centroids_mm:
            d = np.subtract(s.centroids_mm[b], s.centroids_mm[a]) - mean
            dists[_pair_name((a, b))] = float(np.sqrt(d @ np.linalg.solve(cov, d)))
    present = set(known)
    real_edges = {p for p in model.majority if p[0] in present and p[1] in present}
    case_edges = {_pair_key(*tuple(p)) for p in s.contacts}
    case_edges = {p for p in case_edges if p in model.offsets}  # both organs known to the reference
    tp = len(real_edges & case_edges)
    precision = tp / len(case_edges) if case_edges else 1.0
    recall = tp / len(real_edges) if real_edges else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "organs": sorted(s.volumes_ml),
        "missing_organs": sorted(o for o in model.organs if o not in s.volumes_ml and model.presence[o] >= 0.5),
        "truncated_organs": sorted(s.truncated),
        "volume_ml": {o: s.volumes_ml[o] for o in sorted(s.volumes_ml)},
        "volume_abs_z": vol_z,
        "mahalanobis": dists,
        "mahalanobis_median": float(np.median(list(dists.values()))) if dists else None,
        "contacts": {
            "precision": precision, "recall": recall, "f1": f1,
            "extra": sorted(_pair_name(p) for p in case_edges - real_edges),
            "missing": sorted(_pair_name(p) for p in real_edges - case_edges),
        },
        "direction_errors": direction_errors(s),
    }


def _median(values: Iterable[float]) -> float | None:
    v = [x for x in values if x is not None and not math.isnan(x)]
    return float(np.median(v)) if v else None


def _summarise_cases(cases: Mapping[str, dict[str, Any]], model: ReferenceModel, n_cases: int) -> dict[str, Any]:
    per_pair: dict[str, list[float]] = {}
    all_d: list[float] = []
    vol_z: dict[str, list[float]] = {}
    volumes: dict[str, list[float]] = {}
    presence: dict[str, int] = {}
    for c in cases.values():
        for p, d in c["mahalanobis"].items():
            per_pair.setdefault(p, []).append(d)
            all_d.append(d)
        for o, z in c["volume_abs_z"].items():
            vol_z.setdefault(o, []).append(z)
        for o, v in c["volume_ml"].items():
            volumes.setdefault(o, []).append(v)
            presence[o] = presence.get(o, 0) + 1
    f1 = [c["contacts"]["f1"] for c in cases.values()]
    n_dir = [len(c["direction_errors"]) for c in cases.values()]
    rules: dict[str, int] = {}
    for c in cases.values():
        for e in c["direction_errors"]:
            key = e.split(" at x=")[0].split(" (by ")[0]
            rules[key] = rules.get(key, 0) + 1
    return {
        "n_cases": n_cases,
        "presence": {o: presence.get(o, 0) / max(n_cases, 1) for o in sorted(set(presence) | set(model.organs))},
        "volume_ml": {o: {"median": float(np.median(v)), "mean": float(np.mean(v)), "min": float(np.min(v)),
                          "max": float(np.max(v)), "values": [float(x) for x in v]}
                      for o, v in sorted(volumes.items())},
        "volume_abs_z_median": {o: _median(z) for o, z in sorted(vol_z.items())},
        "volume_abs_z_overall_median": _median(z for zs in vol_z.values() for z in zs),
        "mahalanobis_per_pair_median": {p: _median(v) for p, v in sorted(per_pair.items())},
        "mahalanobis_per_case_median": {k: c["mahalanobis_median"] for k, c in cases.items()},
        "mahalanobis_median": _median(all_d),
        "mahalanobis_mean": float(np.mean(all_d)) if all_d else None,
        "contact_f1_median": _median(f1),
        "contact_f1_mean": float(np.mean(f1)) if f1 else None,
        "contact_precision_mean": float(np.mean([c["contacts"]["precision"] for c in cases.values()])) if f1 else None,
        "contact_recall_mean": float(np.mean([c["contacts"]["recall"] for c in cases.values()])) if f1 else None,
        "direction_errors_total": int(sum(n_dir)),
        "cases_with_direction_errors": int(sum(1 for x in n_dir if x)),
        "direction_errors_by_rule": dict(sorted(rules.items())),
    }


def score_set(
    model: ReferenceModel,
    summaries: Sequence[MapSummary],
    records: Mapping[str, Mapping[str, Any]] | None = None,
    settings: Settings = Settings(),
) -> dict[str, Any]:
    """Score label maps against a reference model: per case and summarised."""
    cases = {s.case_id: _score_case(model, s, settings) for s in summaries}
    out = _summarise_cases(cases, model, len(summaries))
    if records is not None:
        viol = {k: record_violations(records.get(k)) for k in cases}
        with_report = {k: v for k, v in viol.items() if v is not None}
        for k, v in with_report.items():
            cases[k]["constraint_report"] = v
        out["constraint_reports"] = {
            "cases_with_report": len(with_report),
            "hard_violations_total": int(sum(v["hard_violations"] for v in with_report.values())),
            "impossible_overlaps_total": int(sum(v["impossible_overlaps"] for v in with_report.values())),
            "cases_with_impossible_overlaps": int(sum(1 for v in with_report.values() if v["impossible_overlaps"])),
            "cases_with_hard_violations": int(sum(1 for v in with_report.values() if v["hard_violations"])),
        }
    out["cases"] = cases
    return out


def real_baseline(real: Sequence[MapSummary], settings: Settings = Settings()) -> dict[str, Any]:
    """Leave-one-out real-vs-real scores: subject i against the model fitted on the others."""
    if len(real) < 2:
        raise EvaluationError([f"real set: expected at least 2 real label maps for the leave-one-out "
                               f"baseline; found {len(real)}"])
    cases: dict[str, dict[str, Any]] = {}
    for i, s in enumerate(real):
        model = fit_reference([r for j, r in enumerate(real) if j != i], settings)
        cases[s.case_id] = _score_case(model, s, settings)
    full = fit_reference(real, settings)
    out = _summarise_cases(cases, full, len(real))
    out["cases"] = cases
    return out


_HEADLINE = ("mahalanobis_median", "contact_f1_median", "contact_f1_mean", "volume_abs_z_overall_median",
             "direction_errors_total", "cases_with_direction_errors", "n_cases")


def compare(
    real: Sequence[MapSummary],
    synthetic: Sequence[MapSummary],
    records: Mapping[str, Mapping[str, Any]] | None = None,
    settings: Settings = Settings(),
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The full report (JSON-able dict): reference, synthetic scores, real leave-one-out baseline.

    Args:
        real: summaries of the real subjects (>= 2).
        synthetic: summaries of the synthetic cases (>= 1).
        records: synthetic case id -> record (constraint reports), optional.
        settings: evaluation settings.
        baseline: a precomputed ``real_baseline(real, settings)`` (benchmarks reuse it).
    """
    problems = []
    if len(real) < 2:
        problems.append(f"real set: expected at least 2 real label maps (leave-one-out baseline); found {len(real)}")
    if not synthetic:
        problems.append("synthetic set: expected at least 1 label map; found none")
    if problems:
        raise EvaluationError(problems)
    model = fit_reference(real, settings)
    shared = sorted(set(model.organs) & {o for s in synthetic for o in s.volumes_ml})
    if not shared:
        raise EvaluationError([
            f"synthetic set: expected organs in common with the real set ({', '.join(model.organs)}); "
            f"found {', '.join(sorted({o for s in synthetic for o in s.volumes_ml}))} (wrong label table?)"
        ])
    syn = score_set(model, synthetic, records, settings)
    base = baseline if baseline is not None else real_baseline(real, settings)
    headline = {k: {"synthetic": syn.get(k), "real_loo": base.get(k)} for k in _HEADLINE}
    m_s, m_r = syn.get("mahalanobis_median"), base.get("mahalanobis_median")
    headline["mahalanobis_ratio_to_real"] = (m_s / m_r) if m_s is not None and m_r else None
    if "constraint_reports" in syn:
        headline["impossible_overlaps_total"] = {"synthetic": syn["constraint_reports"]["impossible_overlaps_total"],
                                                 "real_loo": 0}
    return {
        "format_version": REPORT_FORMAT_VERSION,
        "settings": settings.as_dict(),
        "inputs": {
            "real": {"n": len(real), "cases": [s.case_id for s in real]},
            "synthetic": {"n": len(synthetic), "cases": [s.case_id for s in synthetic]},
            "organs_compared": shared,
            "organs_only_real": sorted(set(model.organs) - set(shared)),
            "organs_only_synthetic": sorted({o for s in synthetic for o in s.volumes_ml} - set(model.organs)),
        },
        "summary": headline,
        "reference": model.to_json(),
        "synthetic": syn,
        "real_loo": base,
    }


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


def write_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write the report as JSON, atomically."""
    from anatomix.io import atomic_write_text

    text = json.dumps(_jsonable(report), indent=1, sort_keys=False)
    return atomic_write_text(path, text + "\n")


# ---- plots ---------------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{float(v):.2f}"


def plot_reports(reports: Mapping[str, Mapping[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """One figure comparing synthetic sets with the real leave-one-out baseline (taken from the first).

    Panels: per-pair Mahalanobis medians (pairs sorted by the real baseline), contact F1 per case,
    organ volume distributions (log scale), and a table of headline numbers.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not reports:
        raise ValueError("no report to plot")
    first = next(iter(reports.values()))
    base = first["real_loo"]
    sets: list[tuple[str, Mapping[str, Any]]] = [("real (leave-one-out)", base)]
    sets += [(name, r["synthetic"]) for name, r in reports.items()]
    colours = ["black"] + [plt.get_cmap("tab10")(i) for i in range(len(reports))]

    fig = plt.figure(figsize=(17, 11))
    gs = fig.add_gridspec(2, 3, height_ratios=[1, 1], width_ratios=[2.2, 1, 1.3])
    ax_pair = fig.add_subplot(gs[0, :])
    ax_f1 = fig.add_subplot(gs[1, 1])
    ax_vol = fig.add_subplot(gs[1, 0])
    ax_tab = fig.add_subplot(gs[1, 2])

    # per-pair Mahalanobis medians
    pairs = sorted(base["mahalanobis_per_pair_median"],
                   key=lambda p: base["mahalanobis_per_pair_median"][p] or 0.0)
    x = np.arange(len(pairs))
    for (name, s), col in zip(sets, colours):
        y = [s["mahalanobis_per_pair_median"].get(p) for p in pairs]
        y = [np.nan if v is None else v for v in y]
        ax_pair.plot(x, y, "o-" if name.startswith("real") else "o", ms=4, lw=1, color=col,
                     label=f"{name}: median {_fmt(s.get('mahalanobis_median'))}")
    ax_pair.set_xticks(x)
    ax_pair.set_xticklabels([p.replace("|", " | ") for p in pairs], rotation=90, fontsize=6)
    ax_pair.set_yscale("log")
    ax_pair.set_ylabel("Mahalanobis distance of centroid offset\n(median over cases)")
    ax_pair.set_title("Pairwise relative position (lower = closer to real)")
    ax_pair.legend(fontsize=8, loc="upper left")
    ax_pair.grid(alpha=0.3)

    # contact F1
    data = [[c["contacts"]["f1"] for c in s["cases"].values()] for _, s in sets]
    bp = ax_f1.boxplot(data, patch_artist=True, widths=0.6)
    for patch, col in zip(bp["boxes"], colours):
        patch.set_facecolor(col)
        patch.set_alpha(0.35)
    for i, d in enumerate(data):
        ax_f1.plot(np.full(len(d), i + 1) + np.linspace(-0.15, 0.15, len(d)), d, ".", color=colours[i], ms=4)
    ax_f1.set_xticks(range(1, len(sets) + 1))
    ax_f1.set_xticklabels([n for n, _ in sets], rotation=30, ha="right", fontsize=8)
    ax_f1.set_ylim(-0.02, 1.02)
    ax_f1.set_title("Contact graph vs real majority: F1 per case")

    # volume distributions
    organs = sorted(base["volume_ml"])
    width = 0.8 / len(sets)
    for k, ((name, s), col) in enumerate(zip(sets, colours)):
        vals = [s["volume_ml"].get(o, {}).get("values", []) for o in organs]
        pos = np.arange(len(organs)) + (k - (len(sets) - 1) / 2) * width
        keep = [(p, v) for p, v in zip(pos, vals) if v]
        if keep:
            b = ax_vol.boxplot([v for _, v in keep], positions=[p for p, _ in keep], widths=width * 0.9,
                               patch_artist=True, showfliers=False, manage_ticks=False)
            for patch in b["boxes"]:
                patch.set_facecolor(col)
                patch.set_alpha(0.4)
        ax_vol.plot([], [], "s", color=col, alpha=0.6, label=name)
    ax_vol.set_yscale("log")
    ax_vol.set_xticks(np.arange(len(organs)))
    ax_vol.set_xticklabels(organs, rotation=60, ha="right", fontsize=7)
    ax_vol.set_ylabel("volume (ml)")
    ax_vol.set_title("Organ volumes")
    ax_vol.legend(fontsize=7)

    # headline table
    ax_tab.axis("off")
    rows = []
    for name, s in sets:
        n = s.get("n_cases") or 1
        ov = s.get("constraint_reports", {}).get("impossible_overlaps_total", "-")
        rows.append([name, _fmt(s.get("mahalanobis_median")), _fmt(s.get("contact_f1_median")),
                     _fmt(s.get("volume_abs_z_overall_median")),
                     f"{s.get('direction_errors_total', 0) / n:.2f}", str(ov), str(s.get("n_cases"))])
    tab = ax_tab.table(cellText=rows, colLabels=["set", "Mahal.\nmedian", "contact\nF1 med.", "|z| log\nvolume",
                                                 "dir. errors\nper case", "impossible\noverlaps", "n"],
                       loc="center", cellLoc="center", colWidths=[0.3] + [0.12] * 6)
    tab.auto_set_font_size(False)
    tab.set_fontsize(7.5)
    tab.scale(1.0, 2.2)
    ax_tab.set_title("Summary")
    fig.suptitle(title or "anatomix evaluate: anatomical realism vs real label maps", fontsize=13)
    fig.tight_layout()
    from anatomix.io import atomic_write

    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format=Path(path).suffix.lstrip(".") or "png"),
                 suffix=Path(path).suffix)
    plt.close(fig)
    return Path(path)


def plot_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """The figure of one report (synthetic set side by side with the real leave-one-out baseline)."""
    return plot_reports({"synthetic": report}, path)


# ---- the command ---------------------------------------------------------------------------------


def evaluate(
    real: str | Path | Sequence[str | Path],
    synthetic: str | Path | Sequence[str | Path],
    *,
    real_labels: str | Path | Mapping[Any, Any] | None = None,
    synthetic_labels: str | Path | Mapping[Any, Any] | None = None,
    out: str | Path | None = None,
    plot: str | Path | None = None,
    settings: Settings = Settings(),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compare synthetic label maps with real ones; write ``out`` (JSON) and ``plot`` (PNG) if given.

    Args:
        real: real label map files and/or folders.
        synthetic: an ``anatomix synth`` output folder, or label map files / folders.
        real_labels: preset, label file or mapping for the real maps (default: embedded names).
        synthetic_labels: label table for the synthetic maps (default: the folder's dataset.json,
            else embedded names).
        out: report path (JSON), written atomically after everything was computed.
        plot: figure path.
        settings: evaluation settings.
        progress: called with each file name as it is read.

    Returns:
        The report (see :func:`compare`).

    Raises:
        EvaluationError: bad inputs, all listed with file, expected and found.
    """
    problems: list[str] = []
    for what, paths in (("real label maps", real), ("synthetic label maps", synthetic)):
        for q in [paths] if isinstance(paths, (str, Path)) else list(paths):
            if not Path(q).exists():
                problems.append(f"{q}: expected a label map file or a folder of them ({what}); found nothing there")
    for what, spec in (("--real-labels", real_labels), ("--synthetic-labels", synthetic_labels)):
        try:
            resolve_label_table(spec)
        except EvaluationError as exc:
            problems.extend(f"{what} {p}" for p in exc.problems)
    if problems:
        raise EvaluationError(problems)
    real_s = load_label_set(real, real_labels, settings=settings, what="real label maps", progress=progress)
    check_real_laterality(real_s)
    if isinstance(synthetic, (str, Path)):
        syn_s, records = load_synthetic_set(synthetic, synthetic_labels, settings=settings, progress=progress)
    else:
        syn_s = load_label_set(synthetic, synthetic_labels, settings=settings, what="synthetic label maps",
                               progress=progress)
        records = {}
    report = compare(real_s, syn_s, records or None, settings)
    if plot is not None:
        plot_report(report, plot)
    if out is not None:
        write_report(report, out)
    return report
