"""Tests of anatomix.evaluate and `anatomix evaluate` on phantom abdomens (no real data needed)."""

from __future__ import annotations

import json

from anatomix.evaluate.report import _jsonable
from pathlib import Path

import numpy as np
import pytest

from anatomix import evaluate as ev
from anatomix.labels import preset

# A toy abdomen: organ -> (centre, radii) in RAS mm (x Right, y Anterior, z Superior), body centred.
TOY = {
    "liver": ((60.0, 10.0, 50.0), (50.0, 45.0, 40.0)),
    "spleen": ((-70.0, -10.0, 45.0), (22.0, 28.0, 32.0)),
    "kidney_right": ((45.0, -45.0, -10.0), (20.0, 18.0, 35.0)),
    "kidney_left": ((-45.0, -45.0, 0.0), (20.0, 18.0, 35.0)),
    "stomach": ((-30.0, 30.0, 40.0), (30.0, 22.0, 28.0)),
    "aorta": ((-12.0, -30.0, 0.0), (9.0, 9.0, 80.0)),
    "inferior_vena_cava": ((18.0, -25.0, 0.0), (10.0, 10.0, 80.0)),
    "pancreas": ((-10.0, 0.0, 5.0), (40.0, 10.0, 10.0)),
}
TOY_VALUES = {o: i + 1 for i, o in enumerate(TOY)}
TOY_NAMES = {v: o for o, v in TOY_VALUES.items()}
SHAPE_MM = (270.0, 210.0, 210.0)


def toy_subject(seed: int, index: int, spacing=(3.0, 3.0, 3.0), shift=None, mirror=False, values=None):
    """Label map (x, y, z), spacing, origin of one toy subject; (seed, index) decides the anatomy."""
    rng = np.random.default_rng([seed, index])
    values = values or TOY_VALUES
    sp = np.asarray(spacing, float)
    shape = tuple(int(round(L / s)) for L, s in zip(SHAPE_MM, sp))
    body = rng.normal(0, 10, 3)  # where the body sits in the scanner: must not matter
    origin = body - (np.asarray(shape) - 1) / 2 * sp
    X, Y, Z = np.meshgrid(*[origin[k] + np.arange(shape[k]) * sp[k] for k in range(3)], indexing="ij")
    lm = np.zeros(shape, np.uint8)
    for organ, (c, r) in TOY.items():
        c = np.asarray(c) + rng.normal(0, 4.0, 3) + body
        r = np.asarray(r) * rng.uniform(0.9, 1.1)
        if shift and organ in shift:
            c = c + np.asarray(shift[organ])
        if mirror:
            c[0] = 2 * body[0] - c[0]
        inside = ((X - c[0]) / r[0]) ** 2 + ((Y - c[1]) / r[1]) ** 2 + ((Z - c[2]) / r[2]) ** 2 <= 1
        lm[inside & (lm == 0)] = values[organ]
    return lm, tuple(sp), tuple(origin)


def toy_set(seed: int, n: int, **kw) -> list[ev.MapSummary]:
    out = []
    for i in range(n):
        lm, sp, org = toy_subject(seed, i, **kw)
        out.append(ev.summarise_label_map(lm, sp, org, TOY_NAMES, f"s{seed}_{i:02d}"))
    return out


@pytest.fixture(scope="module")
def eval_real() -> list[ev.MapSummary]:
    return toy_set(0, 6)


@pytest.fixture(scope="module")
def eval_baseline(eval_real):
    return ev.real_baseline(eval_real)


def _summary(report, key):
    return report["summary"][key]["synthetic"], report["summary"][key]["real_loo"]


# ---- scores ------------------------------------------------------------------------------------


def test_identical_sets_score_like_real_vs_real(eval_real, eval_baseline):
    report = ev.compare(eval_real, eval_real, baseline=eval_baseline)
    syn, real = _summary(report, "mahalanobis_median")
    assert 0.4 * real <= syn <= 1.3 * real
    f1_s, f1_r = _summary(report, "contact_f1_median")
    assert f1_s >= f1_r - 0.1
    assert _summary(report, "direction_errors_total") == (0, 0)
    z_s, z_r = _summary(report, "volume_abs_z_overall_median")
    assert z_s <= 1.3 * z_r
    # the report is JSON-able and carries both sides
    text = json.dumps(_jsonable(report))
    assert "real_loo" in text and "majority_contact_graph" in text


def test_fresh_draw_from_same_anatomy_scores_like_real(eval_real, eval_baseline):
    report = ev.compare(eval_real, toy_set(1, 6), baseline=eval_baseline)
    syn, real = _summary(report, "mahalanobis_median")
    assert syn <= 1.5 * real
    assert report["synthetic"]["direction_errors_total"] == 0


def test_left_right_swapped_set_scores_clearly_worse(eval_real, eval_baseline):
    report = ev.compare(eval_real, toy_set(2, 6, mirror=True), baseline=eval_baseline)
    syn, real = _summary(report, "mahalanobis_median")
    assert syn > 3 * real
    assert report["synthetic"]["cases_with_direction_errors"] == 6
    errors = report["synthetic"]["cases"]["s2_00"]["direction_errors"]
    assert any(e.startswith("laterality: kidney_left") for e in errors)
    assert any("kidney_left not left_of kidney_right" in e for e in errors)


def test_shifted_organ_scores_clearly_worse(eval_real, eval_baseline):
    report = ev.compare(eval_real, toy_set(3, 6, shift={"liver": (0.0, 0.0, -40.0)}), baseline=eval_baseline)
    per_pair_s = report["synthetic"]["mahalanobis_per_pair_median"]
    per_pair_r = report["real_loo"]["mahalanobis_per_pair_median"]
    liver_pairs = [p for p in per_pair_s if "liver" in p.split("|")]
    assert len(liver_pairs) == len(TOY) - 1
    assert np.median([per_pair_s[p] for p in liver_pairs]) > 3 * np.median([per_pair_r[p] for p in liver_pairs])
    others = [p for p in per_pair_s if "liver" not in p.split("|")]
    assert np.median([per_pair_s[p] for p in others]) < 2 * np.median([per_pair_r[p] for p in others])
    # the per-case medians of the liver's pairs are all far out
    for case in report["synthetic"]["cases"].values():
        assert np.median([case["mahalanobis"][p] for p in liver_pairs]) > 3.0


def test_regularised_covariance_is_positive_definite_with_two_subjects(eval_real):
    model = ev.fit_reference(eval_real[:2])
    for mean, cov, n in model.offsets.values():
        assert n == 2
        assert np.all(np.linalg.eigvalsh(cov) >= ev.Settings().min_std_mm ** 2 - 1e-9)


# ---- contacts ----------------------------------------------------------------------------------


def _boxes(spacing):
    """liver|gallbladder touch, gallbladder|stomach 2 mm apart, spleen 8 mm from stomach, in mm."""
    sp = np.asarray(spacing, float)
    shape = tuple(int(round(L / s)) for L, s in zip((140.0, 40.0, 40.0), sp))
    xs = np.arange(shape[0]) * sp[0]
    lm = np.zeros(shape, np.uint8)
    boxes = {"liver": (0, 20), "gallbladder": (20, 40), "stomach": (42, 80), "spleen": (88, 120)}
    for i, (organ, (a, b)) in enumerate(boxes.items(), start=1):
        sel = (xs >= a) & (xs < b)
        lm[sel, 4:-4, 4:-4] = i
    names = {i + 1: o for i, o in enumerate(boxes)}
    return lm, tuple(sp), (0.0, 0.0, 0.0), names


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.0, 1.0, 2.5), (0.5, 0.8, 2.0)])
def test_contact_graph_of_phantom_recovered(spacing):
    lm, sp, org, names = _boxes(spacing)
    s = ev.summarise_label_map(lm, sp, org, names, "boxes")
    assert s.contacts == {frozenset(("liver", "gallbladder")), frozenset(("gallbladder", "stomach"))}
    # with a zero tolerance only the touching pair remains
    s0 = ev.summarise_label_map(lm, sp, org, names, "boxes", settings=ev.Settings(contact_tolerance_mm=0.0))
    assert s0.contacts == {frozenset(("liver", "gallbladder"))}
    # volumes are exact on the original grid: 20 x 32 x 32 mm for the liver
    assert s.volumes_ml["liver"] == pytest.approx(20 * (40 - 8 * sp[1]) * (40 - 8 * sp[2]) / 1000, rel=0.15)


def test_majority_contact_graph_and_f1():
    real = [ev.summarise_label_map(*_boxes((1.0, 1.0, 1.0))[:3], _boxes((1.0, 1.0, 1.0))[3], f"r{i}")
            for i in range(3)]
    lm, sp, org, names = _boxes((1.0, 1.0, 1.0))
    lm2 = lm.copy()
    lm2[lm == 4] = 0
    lm2[np.roll(lm == 4, -8, axis=0)] = 4  # spleen now touches the stomach: one extra contact
    syn = [ev.summarise_label_map(lm, sp, org, names, "same"), ev.summarise_label_map(lm2, sp, org, names, "moved")]
    report = ev.compare(real, syn)
    assert sorted(report["reference"]["majority_contact_graph"]) == ["gallbladder|liver", "gallbladder|stomach"]
    assert report["synthetic"]["cases"]["same"]["contacts"]["f1"] == 1.0
    c = report["synthetic"]["cases"]["moved"]["contacts"]
    assert c["extra"] == ["spleen|stomach"] and c["recall"] == 1.0 and c["precision"] == pytest.approx(2 / 3)


# ---- files, formats, presets, orientation --------------------------------------------------------


def _write(path: Path, lm, sp, org):
    from anatomix import io

    io.write_volume(path, lm, sp, org)
    return path


def test_formats_spacings_and_orientations_agree(tmp_path):
    import SimpleITK as sitk

    lm, sp, org = toy_subject(5, 0)
    a = _write(tmp_path / "a.nii.gz", lm, sp, org)
    lm2, sp2, org2 = toy_subject(5, 0, spacing=(2.0, 2.5, 2.0))
    b = _write(tmp_path / "b.nrrd", lm2, sp2, org2)
    c = _write(tmp_path / "c.mha", lm, sp, org)
    # the same map stored LPS (x and y flipped), as DICOM-derived files are
    img = sitk.GetImageFromArray(np.ascontiguousarray(lm[::-1, ::-1, :].transpose(2, 1, 0)))
    img.SetSpacing(sp)
    far = np.asarray(org) + (np.asarray(lm.shape) - 1) * np.asarray(sp)
    img.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))  # ITK identity = LPS axes
    img.SetOrigin((-far[0], -far[1], org[2]))  # LPS world of the RAS far corner in x and y
    d = tmp_path / "d.nii.gz"
    sitk.WriteImage(img, str(d))
    got = {s.case_id: s for s in ev.load_label_set([a, b, c, d], TOY_NAMES)}
    assert sorted(got) == ["a", "b", "c", "d"]
    ref = got["a"]
    for k in "bcd":
        s = got[k]
        assert s.organs == ref.organs
        for o in ref.organs:
            assert np.allclose(s.centroids_mm[o], ref.centroids_mm[o], atol=2.5), (k, o)
            assert s.volumes_ml[o] == pytest.approx(ref.volumes_ml[o], rel=0.15)
    assert got["d"].contacts == ref.contacts and got["c"].contacts == ref.contacts
    assert ev.direction_errors(got["d"]) == []


@pytest.mark.parametrize("name", ["btcv", "amos", "flare22", "word", "totalsegmentator"])
def test_presets_accepted(tmp_path, name):
    table = preset(name)
    values = {o: next((v for v, n in table.items() if n == o), None) for o in TOY}
    values = {o: v for o, v in values.items() if v is not None}
    assert {"liver", "spleen", "stomach"} <= set(values)
    lm, sp, org = toy_subject(6, 0, values={**{o: 0 for o in TOY}, **values})
    path = _write(tmp_path / f"{name}.nii.gz", lm.astype(np.uint16), sp, org)
    (s,) = ev.load_label_set(path, name)
    assert set(s.organs) == set(values)
    assert s.centroids_mm["liver"][0] > s.centroids_mm["spleen"][0]


def test_embedded_names_and_fixture_formats(fixtures_dir):
    ts = ev.load_label_set(fixtures_dir / "totalsegmentator" / "example_seg_fast_force_split.nii.gz")
    assert {"liver", "spleen", "kidney_left", "aorta"} <= set(ts[0].organs)
    assert ts[0].centroids_mm["liver"][0] > ts[0].centroids_mm["spleen"][0]
    assert "liver" in ts[0].truncated
    again = ev.load_label_set(fixtures_dir / "totalsegmentator" / "example_seg_fast_force_split.nii.gz",
                              "totalsegmentator")
    assert again[0].volumes_ml == ts[0].volumes_ml
    seg = ev.load_label_set([fixtures_dir / "slicerio" / "Segmentation.seg.nrrd",
                             fixtures_dir / "slicerio" / "SegmentationOverlapping.seg.nrrd"])
    assert "lung_right" in seg[0].organs or "right_lung" in seg[0].organs
    assert "overlapping_sphere" in seg[1].organs  # layered segments: overlap counted as contact
    assert any("overlapping_sphere" in p for p in seg[1].contacts)


# ---- bad inputs ----------------------------------------------------------------------------------


def test_bad_inputs_fail_clearly(tmp_path, eval_real):
    with pytest.raises(ev.EvaluationError) as e:
        ev.evaluate([tmp_path / "nope.nii.gz"], tmp_path / "missing", real_labels="nopreset")
    msg = str(e.value)
    assert "nope.nii.gz" in msg and "missing" in msg and "nopreset" in msg and "expected" in msg and "found" in msg

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ev.EvaluationError, match="empty"):
        ev.load_label_set(empty, "flare22")

    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not an image")
    with pytest.raises(ev.EvaluationError, match="junk.nii.gz: expected a readable image"):
        ev.load_label_set(junk, "flare22")

    lm, sp, org = toy_subject(7, 0)
    unnamed = _write(tmp_path / "unnamed.nii.gz", lm, sp, org)
    with pytest.raises(ev.EvaluationError, match="expected label names"):
        ev.load_label_set(unnamed)
    with pytest.raises(ev.EvaluationError, match=r"found unnamed values \[7, 8\]"):
        ev.load_label_set(unnamed, {1: "liver", 2: "spleen", 3: "kidney_right", 4: "kidney_left",
                                    5: "stomach", 6: "aorta"})
    bad_table = tmp_path / "labels.json"
    bad_table.write_text(json.dumps({"1": "livr", "2": "spleen"}))
    with pytest.raises(ev.EvaluationError, match="livr"):
        ev.load_label_set(unnamed, bad_table)

    with pytest.raises(ev.EvaluationError, match="at least 2 real"):
        ev.compare(eval_real[:1], eval_real)
    other = ev.summarise_label_map(lm, sp, org, {v: "urinary_bladder" for v in TOY_NAMES}, "bladder")
    with pytest.raises(ev.EvaluationError, match="organs in common"):
        ev.compare(eval_real, [other])


# ---- records and the command ----------------------------------------------------------------------


def test_constraint_reports_counted():
    rec = {"constraint_report": [
        {"type": "avoid", "a": "liver", "b": "stomach", "hard": True, "value": 0.2, "holds": False},
        {"type": "contact", "a": "liver", "b": "gallbladder", "hard": False, "value": 5.0, "holds": False},
        {"type": "direction", "a": "kidney_left", "b": "kidney_right", "hard": True, "value": 3.0, "holds": True},
    ]}
    v = ev.record_violations(rec)
    assert v["checked"] == 3 and v["hard_violations"] == 1 and v["impossible_overlaps"] == 1
    assert ev.record_violations({"seed": 0}) is None
    # the placement Scene's layout: record["scene"]["report"], entries with `kind`
    scene = {"constraints": {"hard_ok": False, "hard_violations": ["avoid liver-kidney_right"]},
             "scene": {"placement": "random", "report": [
        {"kind": "avoid", "a": "liver", "b": "kidney_right", "hard": True, "value": 0.4, "holds": False},
        {"kind": "contact", "a": "liver", "b": "gallbladder", "hard": False, "value": 9.0, "holds": False},
    ]}}
    v = ev.record_violations(scene)
    assert v["hard_violations"] == 1 and v["impossible_overlaps"] == 1


def test_cli_end_to_end(tmp_path):
    from typer.testing import CliRunner

    from anatomix.cli import app

    real = tmp_path / "real"
    real.mkdir()
    for i in range(3):
        _write(real / f"r{i}.nii.gz", *toy_subject(8, i))
    syn = tmp_path / "synth"
    (syn / "labelsTr").mkdir(parents=True)
    (syn / "records").mkdir()
    (syn / "dataset.json").write_text(json.dumps({"labels": {"background": 0, **TOY_VALUES}}))
    for i in range(2):
        _write(syn / "labelsTr" / f"anatomix_{i:06d}.nii.gz", *toy_subject(9, i, spacing=(1.5, 1.5, 2.0)))
        rep = [{"type": "avoid", "a": "liver", "b": "stomach", "hard": True, "value": 0.3, "holds": i == 0}]
        (syn / "records" / f"anatomix_{i:06d}.json").write_text(json.dumps({
            "seed": 0, "index": i, "constraint_report": rep, "grid": {"fov": "window" if i == 0 else "whole"}}))
    labels = tmp_path / "real_labels.yaml"
    labels.write_text("\n".join(f"{v}: {o}" for o, v in TOY_VALUES.items()))
    out, png = tmp_path / "report.json", tmp_path / "report.png"
    res = CliRunner().invoke(app, ["evaluate", "--real", str(real), "--real-labels", str(labels),
                                   "--synthetic", str(syn), "--out", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["inputs"]["real"]["n"] == 3 and report["inputs"]["synthetic"]["n"] == 2
    assert report["summary"]["impossible_overlaps_total"]["synthetic"] == 1
    # window cases against whole scans are compared, with a warning that says what to do instead
    assert "warning: 1 of 2 synthetic case(s) are fixed-size windows" in " ".join(res.output.split())
    assert "--fov whole" in res.output and report["inputs"]["synthetic"]["window_cases"] == 1
    assert report["synthetic"]["constraint_reports"]["cases_with_report"] == 2
    assert png.stat().st_size > 10_000
    # the per-pair table: every reference pair in the report, the worst ones printed
    assert len(report["pair_table"]) == len(TOY) * (len(TOY) - 1) // 2
    assert "organ pairs, worst first (15 of 28)" in res.output
    assert report["pair_table"][0]["pair"] in res.output

    res = CliRunner().invoke(app, ["evaluate", "--real", str(real), "--synthetic", str(syn),
                                   "--out", str(tmp_path / "r2.json")])
    assert res.exit_code == 1
    assert "expected label names" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r2.json").exists()


def test_per_structure_mask_folder_is_one_subject(tmp_path):
    lm, sp, org = toy_subject(10, 0)
    subject = tmp_path / "subject_a"
    subject.mkdir()
    for organ in ("liver", "kidney_right", "spleen"):
        _write(subject / f"{organ}.nii.gz", (lm == TOY_VALUES[organ]).astype(np.uint8), sp, org)
    (s,) = ev.load_label_set(tmp_path)
    assert s.case_id == "subject_a" and s.organs == ["kidney_right", "liver", "spleen"]
    full = ev.summarise_label_map(lm, sp, org, TOY_NAMES, "full")
    for o in s.organs:
        assert s.volumes_ml[o] == pytest.approx(full.volumes_ml[o])
        assert np.allclose(s.centroids_mm[o], full.centroids_mm[o], atol=0.5)
    assert s.contacts == {pair for pair in full.contacts if pair <= set(s.organs)}


def test_pair_table_points_at_the_wrong_pairs(eval_real, eval_baseline):
    """A liver moved 40 mm down: the liver's pairs come first, with large offset ratios; contact
    frequencies are the shares of maps where the two organs touch."""
    syn = toy_set(3, 6, shift={"liver": (0.0, 0.0, -40.0)})
    report = ev.compare(eval_real, syn, baseline=eval_baseline)
    rows = report["pair_table"]
    assert len(rows) == len(TOY) * (len(TOY) - 1) // 2 and len({r["pair"] for r in rows}) == len(rows)
    by = {r["pair"]: r for r in rows}
    top = [r["pair"] for r in rows[: len(TOY) - 1]]
    assert sum("liver" in p.split("|") for p in top) >= len(TOY) - 2
    for p, r in by.items():
        assert r["offset_ratio"] == pytest.approx(r["offset_mahalanobis_synthetic"] / r["offset_mahalanobis_real_loo"])
        a, b = p.split("|")
        touching_syn = sum(frozenset((a, b)) in s.contacts for s in syn) / len(syn)
        touching_real = sum(frozenset((a, b)) in s.contacts for s in eval_real) / len(eval_real)
        assert r["contact_rate_synthetic"] == pytest.approx(touching_syn)
        assert r["contact_rate_real"] == pytest.approx(touching_real)
        assert r["n_synthetic"] == 6 and r["n_real"] == 6
        assert r["real_majority_contact"] == (touching_real >= 0.5)
    liver = [r for p, r in by.items() if "liver" in p.split("|")]
    assert np.median([r["offset_ratio"] for r in liver]) > 3
    # the same anatomy drawn again: no pair is badly off
    same = ev.compare(eval_real, toy_set(1, 6), baseline=eval_baseline)["pair_table"]
    assert np.median([r["offset_ratio"] for r in same]) < 1.6


def test_sets_are_scored_on_the_organs_both_have(eval_real, eval_baseline, tmp_path):
    """Real maps labelling more structures (TotalSegmentator's ribs, vertebrae) than synthesis makes:
    synthetic and real leave-one-out figures are over the same organs and pairs (and the figure
    draws those); the others are listed in the report's inputs."""
    from anatomix.evaluate.report import _plotted, plot_report

    few = [ev.MapSummary(**{**vars(s), "volumes_ml": {o: v for o, v in s.volumes_ml.items()
                                                      if o not in ("pancreas", "aorta")}})
           for s in toy_set(1, 3)]
    report = ev.compare(eval_real, few, baseline=eval_baseline)
    assert report["inputs"]["organs_only_real"] == ["aorta", "pancreas"]
    pairs, organs = _plotted(report)
    assert organs == sorted(set(TOY) - {"aorta", "pancreas"})
    assert len(pairs) == 6 * 5 // 2 and not any("aorta" in p or "pancreas" in p for p in pairs)
    assert set(report["real_loo"]["mahalanobis_per_pair_median"]) == set(pairs)
    assert set(report["synthetic"]["mahalanobis_per_pair_median"]) <= set(pairs)
    assert set(report["synthetic"]["presence"]) == set(organs)  # absent organs are not "0 % present"
    same = ev.real_baseline([s.restricted(organs) for s in eval_real])
    assert report["summary"]["mahalanobis_median"]["real_loo"] == same["mahalanobis_median"]
    assert report["summary"]["mahalanobis_median"]["real_loo"] != eval_baseline["mahalanobis_median"]
    assert plot_report(report, tmp_path / "f.png").stat().st_size > 10_000


@pytest.mark.parametrize("kw, option", [({"eval_spacing_mm": float("nan")}, "--spacing-mm"),
                                        ({"eval_spacing_mm": 0.0}, "--spacing-mm"),
                                        ({"contact_tolerance_mm": float("nan")}, "--contact-tolerance-mm"),
                                        ({"contact_tolerance_mm": -1.0}, "--contact-tolerance-mm")])
def test_bad_settings_are_refused_by_name(kw, option):
    with pytest.raises(ev.EvaluationError, match=f"{option}: expected"):
        ev.Settings(**kw)
