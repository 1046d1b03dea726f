"""Organ complexes on the toy bank (a real ShapeBank ingested from phantom label maps)."""

from __future__ import annotations

import numpy as np
import pytest

from anatomix.complexes import (
    DEFAULT_COMPLEXES,
    ComplexSpec,
    choose_subject,
    complex_geometry,
    member_assignment,
    offset_spread,
    sample_member_anchors,
    subject_offsets,
)

TOY = ComplexSpec(name="toy_hepatic", root="liver", members=("gallbladder", "kidney_right"), spread=0.5)


def _centroid(bank, organ, subject):
    return np.asarray(next(r.centroid_mm for r in bank.shapes(organ) if r.subject_id == subject))


def test_offsets_are_the_subjects_relative_geometry(anatomy_bank) -> None:
    complete = [r.subject_id for r in anatomy_bank.shapes("liver") if not r.truncated]
    assert len(complete) == 2  # the toy's last subject has a truncated liver
    for sid in complete:
        offs = subject_offsets(anatomy_bank, sid, TOY)
        assert set(offs) == {"gallbladder", "kidney_right"}
        np.testing.assert_allclose(offs["gallbladder"],
                                   _centroid(anatomy_bank, "gallbladder", sid) - _centroid(anatomy_bank, "liver", sid))
    truncated = next(r.subject_id for r in anatomy_bank.shapes("liver") if r.truncated)
    with pytest.raises(KeyError, match="complete liver"):
        subject_offsets(anatomy_bank, truncated, TOY)


def test_spread_is_the_regularised_offset_covariance(anatomy_bank) -> None:
    spread = offset_spread(anatomy_bank, TOY, prior_std_mm=5.0, prior_weight=2.0)
    sids = sorted(r.subject_id for r in anatomy_bank.shapes("liver") if not r.truncated)
    d = np.array([_centroid(anatomy_bank, "gallbladder", s) - _centroid(anatomy_bank, "liver", s) for s in sids])
    expected = (np.cov(d.T, ddof=1) + 2.0 * 25.0 * np.eye(3)) / 3.0
    np.testing.assert_allclose(spread["gallbladder"], expected)
    assert np.linalg.eigvalsh(spread["kidney_right"]).min() > 0


def test_drawn_members_keep_the_relative_geometry_within_the_spread(anatomy_bank) -> None:
    rng = np.random.default_rng(7)
    sid = choose_subject(anatomy_bank, TOY, rng=rng)
    geo = complex_geometry(anatomy_bank, TOY, sid)
    root = np.array([40.0, 50.0, 70.0])  # wherever placement put the liver
    draws = {m: [] for m in TOY.members}
    for _ in range(3000):
        for m, a in sample_member_anchors(geo, root, rng=rng).items():
            draws[m].append(a)
    for m, pts in draws.items():
        pts = np.array(pts)
        rel = pts - root
        cov = geo.spread_cov_mm[m]
        np.testing.assert_allclose(rel.mean(axis=0), geo.offsets_mm[m], atol=0.3)
        np.testing.assert_allclose(np.cov(rel.T), cov, atol=0.1 * np.abs(cov).max())
        # 99 % of draws within the chi-square(3) 0.99 Mahalanobis radius (11.34) of the offset
        d = rel - geo.offsets_mm[m]
        maha2 = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
        assert np.mean(maha2 <= 11.34) == pytest.approx(0.99, abs=0.01)
        # spread 0.5: member offsets stay within 0.5 x the across-subject variation
        np.testing.assert_allclose(cov, 0.25 * offset_spread(anatomy_bank, TOY)[m])


def test_zero_spread_reproduces_the_subject_exactly_and_draws_replay(anatomy_bank) -> None:
    spec = TOY.model_copy(update={"spread": 0.0})
    sid = choose_subject(anatomy_bank, spec, rng=np.random.default_rng(0))
    geo = complex_geometry(anatomy_bank, spec, sid)
    root = _centroid(anatomy_bank, "liver", sid)
    got = sample_member_anchors(geo, root, rng=np.random.default_rng(1))
    for m in spec.members:
        np.testing.assert_allclose(got[m], _centroid(anatomy_bank, m, sid), atol=1e-9)
    a = sample_member_anchors(complex_geometry(anatomy_bank, TOY, sid), root, rng=np.random.default_rng(5))
    b = sample_member_anchors(complex_geometry(anatomy_bank, TOY, sid), root, rng=np.random.default_rng(5))
    assert all(np.array_equal(a[m], b[m]) for m in a)


def test_choose_subject_prefers_complete_roots(anatomy_bank) -> None:
    complete = {r.subject_id for r in anatomy_bank.shapes("liver") if not r.truncated}
    picks = {choose_subject(anatomy_bank, TOY, rng=np.random.default_rng(i)) for i in range(40)}
    assert picks == complete


def test_default_complexes_and_first_wins_assignment() -> None:
    names = [c.name for c in DEFAULT_COMPLEXES]
    assert names == ["foregut", "hepatic", "kidney_adrenal_right", "kidney_adrenal_left", "great_vessels"]
    a = member_assignment(DEFAULT_COMPLEXES)
    assert a["inferior_vena_cava"] == "hepatic" and a["adrenal_gland_right"] == "hepatic"
    assert a["adrenal_gland_left"] == "kidney_adrenal_left" and a["esophagus"] == "great_vessels"
    assert a["duodenum"] == "foregut" and a["pancreas"] == "foregut"
    off = [c.model_copy(update={"enabled": False}) if c.name == "hepatic" else c for c in DEFAULT_COMPLEXES]
    b = member_assignment(off)
    assert b["adrenal_gland_right"] == "kidney_adrenal_right" and b["inferior_vena_cava"] == "great_vessels"
    assert "gallbladder" not in b
    with pytest.raises(ValueError, match="distinct members"):
        ComplexSpec(name="bad", root="liver", members=("liver",))
