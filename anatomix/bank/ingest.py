"""Ingest: label maps -> checked, resampled, de-identified shapes -> a bank folder.

Every input is read and checked first (all problems reported at once, nothing written); the
bank is then assembled in memory and written by :mod:`anatomix.bank.write`.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from anatomix.bank.geometry import _cut_shape, bank_grid, _frame, _present_values, _r, _resample_layers, _Subject
from anatomix.bank.manifest import (
    SPACING_RANGE_MM,
    BankManifest,
    BankWarning,
    ShapeRecord,
    SubjectInfo,
)
from anatomix.bank.qc import _qc, implausible_volumes
from anatomix.bank.write import _write_bank, check_output_folder
from anatomix.errors import InputError
from anatomix.progress import progress_bar

TruncatedPolicy = Literal["keep", "drop", "prefer-complete"]

# --------------------------------------------------------------------------------------------
# label tables


@dataclass(frozen=True)
class LabelSpec:
    """How to name the labels of an input: a value table and/or a renaming of embedded names.

    ``values``: label value -> organ (None = ignore that value); ``renames``: embedded name ->
    organ (None = ignore); ``source``: for messages.
    """

    values: Mapping[int, str | None] | None
    renames: Mapping[str, str | None]
    source: str


def resolve_labels(labels: str | os.PathLike | Mapping[Any, Any] | None) -> LabelSpec:
    """Turn ``--labels`` (preset name, JSON/YAML file, mapping, or "auto") into a LabelSpec.

    A file maps label value -> organ name (``1: liver``), or embedded name -> organ name
    (``"right lung": lung_right``) to rename what the file itself names; ``null`` ignores
    that label. Names map onto the anatomix vocabulary (aliases accepted).

    Raises:
        InputError: unknown preset, unreadable file, unknown organ names (all listed).
    """
    from anatomix.label_tables import load_label_entries

    if labels is None or (isinstance(labels, str) and labels.strip().lower() == "auto"):
        return LabelSpec(None, {}, "auto")
    values, renames, source = load_label_entries(labels, allow_ignore=True, allow_renames=True,
                                                 option="--labels", alternatives="'auto'")
    return LabelSpec(values or None, renames, source)


def _organ_table(path: Path, lv: Any, spec: LabelSpec, organs: set[str] | None,
                 present: list[int], problems: list[str]) -> dict[int, str]:
    """value -> organ for one input; appends problems."""
    from anatomix.labels import (
        PRESETS,
        UnknownOrganError,
        canonical_organ,
        closest_organs,
        organs_option,
    )

    table: dict[int, str] = {}
    names = lv.names
    use_names = lv.layered or spec.values is None
    if use_names:
        if not names:
            problems.append(f"{path}: expected label names embedded in the file (TotalSegmentator "
                            "NIfTI header extension or .seg.nrrd segments) for --labels auto, found "
                            f"none; pass --labels with a preset ({', '.join(sorted(PRESETS))}) or "
                            "a JSON/YAML file mapping label value to organ name")
            return {}
        unknown: list[str] = []
        for value, name in names.items():
            key = name.strip().lower()
            if key in spec.renames:
                organ = spec.renames[key]
                if organ is not None:
                    table[value] = organ
                continue
            try:
                table[value] = canonical_organ(name)
            except UnknownOrganError:
                if organs is None and value in present:
                    unknown.append(name)
        for u in unknown:
            close = closest_organs(u)
            problems.append(f"{path}: expected organ names anatomix knows, found {u!r} "
                            f"({'closest: ' + ', '.join(close) if close else 'no close match'})"
                            f"; rename it in a --labels file ('{u}: <organ>', or null to "
                            f"ignore it) or keep only the known ones with {organs_option(table.values())}")
    else:
        assert spec.values is not None
        missing = [v for v in present if v not in spec.values]
        if missing:
            problems.append(f"{path}: expected only label values named by {spec.source} "
                            f"({', '.join(map(str, sorted(spec.values)))}), found values "
                            f"{', '.join(map(str, missing[:20]))}{' ...' if len(missing) > 20 else ''}"
                            " not in the label table; use the right preset or a label file "
                            "(map a value to null to ignore it)")
        table = {v: o for v, o in spec.values.items() if o is not None}
    if organs is not None:
        table = {v: o for v, o in table.items() if o in organs}
    if not lv.layered:  # embedded tables name every possible label: keep the present ones
        table = {v: o for v, o in table.items() if v in set(present)}
    return table


# --------------------------------------------------------------------------------------------
# ingest


def _subject_geometry(path: Path, spec: LabelSpec, organs: set[str] | None,
                      spacing: np.ndarray, problems: list[str]) -> _Subject | None:
    """Read, validate, resample and cut one subject into shapes (in memory)."""
    from anatomix import io

    from anatomix import mesh

    before = len(problems)
    try:  # meshes (STL/OBJ/PLY...) are voxelised at the bank spacing by anatomix.mesh
        lv = mesh.read_mesh_subject(path, spacing.tolist()) if mesh.is_mesh_input(path) else io.read_label_map(path)
    except InputError as e:
        problems.extend(e.problems)
        return None
    arr = lv.array
    layers = [arr[..., i] for i in range(arr.shape[3])] if lv.layered else [arr]
    present = _present_values(layers)
    if not present:
        problems.append(f"{path}: expected labelled organs, found an all-background label map "
                        "(every voxel is 0)")
        return None
    table = _organ_table(path, lv, spec, organs, present, problems)
    if len(problems) > before:
        return None
    organ_names = sorted(set(table.values()))
    idx_of = {o: i + 1 for i, o in enumerate(organ_names)}
    if lv.layered:  # a segment / mask file that is empty is a bad input
        empty = [lv.names[v] for v in sorted(table) if lv.names and v in lv.names
                 and v not in present]
        if empty:
            problems.append(f"{path}: expected every segment/mask to contain voxels, found empty "
                            f"organ(s): {', '.join(empty)}; remove those masks or select organs "
                            "with --organs")
            return None
    if not any(v in present for v in table):
        what = "the selected organs (--organs)" if organs is not None else "organs"
        problems.append(f"{path}: expected {what}, found none of them in the label map "
                        f"(values present: {', '.join(map(str, present[:20]))})")
        return None
    # compact each layer to organ indices 1..K, then resample to the bank grid (RAS)
    compact_layers = []
    cdtype = np.uint8 if len(organ_names) < 255 else np.uint16
    for layer in layers:
        lut_size = int(layer.max()) + 1
        if lut_size <= (1 << 20):
            lut = np.zeros(lut_size, dtype=cdtype)
            for v, o in table.items():
                if v < lut_size:
                    lut[v] = idx_of[o]
            compact_layers.append(lut[layer])
        else:  # huge label values: one comparison per mapped value
            c = np.zeros(layer.shape, dtype=cdtype)
            for v, o in table.items():
                c[layer == v] = idx_of[o]
            compact_layers.append(c)
    del layers, arr
    extent = np.array(compact_layers[0].shape) * np.asarray(lv.spacing_mm, dtype=float)
    lo, n_out = bank_grid(compact_layers[0].shape, lv.spacing_mm, lv.origin_mm, spacing)
    if float(np.prod(n_out.astype(float))) > io.MAX_VOXELS:
        problems.append(f"{path}: expected a field of view of at most {io.MAX_VOXELS:,} voxels "
                        f"at the bank spacing, found {' x '.join(f'{e:.0f}' for e in extent)} mm "
                        f"= {' x '.join(map(str, n_out))} voxels; check the file's spacing or "
                        "use a coarser --spacing")
        return None
    res_layers = _resample_layers(compact_layers, lv.spacing_mm, lv.origin_mm, spacing, (lo, n_out))
    hi = lo + (n_out - 1) * spacing
    del compact_layers
    h = hashlib.sha256()
    h.update(json.dumps([organ_names, [float(s) for s in spacing]]).encode())
    for L in res_layers:
        h.update(str(L.shape).encode())
        h.update(np.ascontiguousarray(L).tobytes())
    sid = "s" + h.hexdigest()[:12]
    shapes = []
    from scipy import ndimage

    grid = res_layers[0].shape
    layer_objs = [ndimage.find_objects(L) for L in res_layers]
    for k, organ in enumerate(organ_names, start=1):
        boxes = []
        for objs in layer_objs:
            if len(objs) >= k and objs[k - 1] is not None:
                boxes.append(objs[k - 1])
        if not boxes:
            warnings.warn(f"{path}: organ {organ} has no voxel at {spacing[0]:g} mm bank spacing "
                          "(too small); skipped", BankWarning, stacklevel=2)
            continue
        b0 = np.array([min(b[a].start for b in boxes) for a in range(3)])
        b1 = np.array([max(b[a].stop for b in boxes) for a in range(3)])
        faces = [f"{'xyz'[a]}{s}" for a in range(3) for s, hit in
                 (("-", b0[a] == 0), ("+", b1[a] == grid[a])) if hit]
        m = np.zeros(tuple(b1 - b0), dtype=bool)
        sl = tuple(slice(int(b0[a]), int(b1[a])) for a in range(3))
        for L in res_layers:
            m |= L[sl] == k
        shapes.append(_cut_shape(organ, m, b0, lo, spacing, faces))
    return _Subject(sid, str(path), shapes, lo, hi)



def ingest_masks(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    labels: str | os.PathLike | Mapping[Any, Any] = "auto",
    spacing_mm: float | Sequence[float] = 1.5,
    overwrite: bool = False,
    strict: bool = False,
    organs: Sequence[str] | None = None,
    truncated: TruncatedPolicy = "keep",
    progress: bool = False,
) -> BankManifest:
    """Build a shape bank from label maps.

    Every input is read and checked first; all problems are reported at once and nothing is
    written. Then the bank is written to a temporary folder beside ``out`` and renamed into
    place (a failure or Ctrl-C leaves the old bank, or none).

    Args:
        inputs: label-map files / folders (see :func:`anatomix.io.find_label_maps`).
        out: bank folder to create.
        labels: "auto" (names embedded in the files), a preset name, a JSON/YAML file, or a
            mapping (value or embedded name -> organ, None to ignore).
        spacing_mm: isotropic bank spacing (or 3 values), mm.
        overwrite: replace an existing bank at ``out``.
        strict: treat QC warnings (truncated, tiny, fragmented, wrong side) as errors.
        organs: keep only these organs (vocabulary names or aliases); other labels are ignored.
        truncated: "keep" truncated shapes (flagged), "drop" them, or "prefer-complete": an
            organ's truncated shapes are dropped when some subject has a complete one,
            otherwise only the one cut on the fewest faces (then the largest) is kept (for banks mixing whole scans
            with partial excerpts). Body frames are computed before anything is dropped.
        progress: show a rich progress bar.

    Returns:
        The manifest written to ``out/manifest.json``.

    Raises:
        InputError: bad inputs/options (every problem listed; nothing written).
    """
    from anatomix import io
    from anatomix.labels import UnknownOrganError, canonical_organ

    out = Path(out)
    problems: list[str] = []
    sp = np.array([float(spacing_mm)] * 3 if isinstance(spacing_mm, (int, float, np.number)) else
                  [float(s) for s in spacing_mm])
    lo_mm, hi_mm = SPACING_RANGE_MM
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or np.any(sp < lo_mm) or np.any(sp > hi_mm):
        problems.append(f"--spacing: expected 1 or 3 values from {lo_mm:g} to {hi_mm:g} mm, found "
                        f"{spacing_mm!r}")
    if truncated not in ("keep", "drop", "prefer-complete"):
        problems.append(f"--truncated: expected keep, drop or prefer-complete, found {truncated!r}")
    organ_set: set[str] | None = None
    if organs is not None:
        organ_set = set()
        for o in organs:
            try:
                organ_set.add(canonical_organ(o))
            except UnknownOrganError as e:
                problems.append(f"--organs: {e}")
    problems.extend(check_output_folder(out, overwrite))  # again under the lock at the end
    spec: LabelSpec | None = None
    try:
        spec = resolve_labels(labels)
    except InputError as e:
        problems.extend(e.problems)
    bad_options = bool(problems)  # no file is read with a bad option (a spacing of 0 would overflow)
    paths: list[Path] = []
    for raw in inputs:  # expand one by one so that a missing path does not hide other problems
        try:
            paths.extend(p for p in io.find_label_maps([raw]) if p not in paths)
        except InputError as e:
            problems.extend(e.problems)
    if not inputs:
        problems.append("inputs: expected at least one label map or folder, found none")
    if spec is None or bad_options or (problems and not paths):
        raise InputError(problems)

    subjects: list[_Subject] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BankWarning)
        with progress_bar("ingest", len(paths), enabled=progress and len(paths) > 0) as advance:
            for p in paths:
                sub = _subject_geometry(p, spec, organ_set, sp, problems)
                if sub is not None:
                    subjects.append(sub)
                advance()
    seen: dict[str, str] = {}
    for sub in subjects:
        if sub.subject_id in seen:
            problems.append(f"{sub.source}: expected distinct subjects, found the same label "
                            f"geometry as {seen[sub.subject_id]} (duplicate subject); give each "
                            "subject once")
        else:
            seen[sub.subject_id] = sub.source
    if problems:
        raise InputError(problems)
    manifest, files, qc_warnings = _assemble(subjects, sp, truncated)
    if not manifest.shapes:  # --truncated drop removed every shape: no bank rather than an empty one
        cut = sum(len(sub.shapes) for sub in subjects)
        raise InputError([f"--truncated {truncated}: expected shapes left to write, found none: all {cut} "
                          f"shape(s) of {len(subjects)} subject(s) are cut by their field of view; "
                          "keep them flagged with --truncated keep (the default)"])
    for c in caught:
        qc_warnings.insert(0, str(c.message))
    if strict and qc_warnings:
        raise InputError([f"--strict: {m}" for m in qc_warnings], what="input (strict mode)")
    for m in qc_warnings:
        warnings.warn(m, BankWarning, stacklevel=2)
    _write_bank(out, manifest, files, overwrite=overwrite)
    return manifest


def _assemble(subjects: list[_Subject], sp: np.ndarray, policy: str
              ) -> tuple[BankManifest, dict[str, bytes], list[str]]:
    subjects = sorted(subjects, key=lambda s: s.subject_id)
    frames = {sub.subject_id: _frame(sub) for sub in subjects}  # before any shape is dropped
    if policy != "keep":
        complete = {s.organ for sub in subjects for s in sub.shapes if not s.faces}
        best: dict[str, tuple[int, int, str]] = {}  # fewest cut faces, then most voxels
        for sub in subjects:
            for s in sub.shapes:
                if s.faces and s.organ not in complete:
                    cand = (-len(s.faces), s.n_vox, sub.subject_id)
                    best[s.organ] = max(best.get(s.organ, cand), cand)
        for sub in subjects:
            sub.shapes = [s for s in sub.shapes if not s.faces or
                          (policy == "prefer-complete" and
                           best.get(s.organ, (0, 0, ""))[2] == sub.subject_id)]
    voxel_ml = float(np.prod(sp)) / 1000.0
    records: list[ShapeRecord] = []
    infos: list[SubjectInfo] = []
    files: dict[str, bytes] = {}
    msgs: list[str] = []
    for sub in subjects:
        if not sub.shapes:
            continue
        origin, ref, exact = frames[sub.subject_id]
        flags = _qc(sub, origin, ref, voxel_ml)
        for s in sorted(sub.shapes, key=lambda s: s.organ):
            rel = f"shapes/{s.organ}/{sub.subject_id}.bits.z"
            files[rel] = s.packed
            rec = ShapeRecord(
                shape_id=f"{s.organ}/{sub.subject_id}", organ=s.organ, subject_id=sub.subject_id,
                file=rel, shape_vox=s.shape_vox, origin_mm=_r(s.origin_world - origin),
                volume_ml=round(s.n_vox * voxel_ml, 4), extents_mm=_r(s.extents_mm),
                centroid_mm=_r(s.centroid_world - origin),
                principal_axes=tuple(_r(a, 6) for a in s.axes),  # type: ignore[arg-type]
                principal_std_mm=_r(s.std), truncated=bool(s.faces),
                truncated_faces=list(s.faces), dropped_fraction=round(s.dropped, 6),
                qc_flags=flags[s.organ], sha256=hashlib.sha256(s.packed).hexdigest(),
            )
            records.append(rec)
            why = ([f"truncated by the field of view ({', '.join(s.faces)})"] if s.faces else []) \
                + [{"tiny": f"tiny ({rec.volume_ml:g} ml)",
                    "fragmented": f"fragmented ({100 * s.dropped:.1f}% outside the largest "
                                  "component, dropped)",
                    "wrong_side": "on the wrong side of the body"}[f] for f in rec.qc_flags]
            if why:
                msgs.append(f"subject {sub.subject_id} ({sub.source}): {s.organ} " +
                            "; ".join(why))
        # shapes cut by the field of view are small for that reason, not for a wrong table
        odd = implausible_volumes({s.organ: s.n_vox * voxel_ml for s in sub.shapes if not s.faces})
        if len(odd) >= 2:  # several organs far from adult sizes at once: most likely the wrong label table
            from anatomix.labels import PRESETS

            msgs.append(f"subject {sub.subject_id} ({sub.source}): {len(odd)} organs have implausible volumes "
                        f"({'; '.join(odd)}): is --labels the right label table for this file? (presets: "
                        f"{', '.join(sorted(PRESETS))}, or a label file)")
        infos.append(SubjectInfo(
            subject_id=sub.subject_id, frame_reference=ref, frame_exact=exact,
            fov_min_mm=_r(sub.fov_lo - origin), fov_max_mm=_r(sub.fov_hi - origin),
            organs=sorted(s.organ for s in sub.shapes)))
    records.sort(key=lambda r: (r.organ, r.subject_id))
    m = BankManifest(spacing_mm=_r(sp), subjects=infos, shapes=records)
    m = m.model_copy(update={"content_hash": m.compute_hash()})
    return m, files, msgs


