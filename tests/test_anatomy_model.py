"""The joint anatomy model: fit on phantom statistics, conditioning, regularisation, round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from anatomix.anatomy_model import AnatomyModel, bank_statistics, fit_anatomy_model
from anatomix.errors import ConfigError

TRUE_MEAN = {"liver": np.array([-80.0, 10.0, 90.0]), "kidney_right": np.array([-60.0, -30.0, 0.0]),
             "spleen": np.array([90.0, -20.0, 60.0])}


def _phantom_subjects(n: int, seed: int = 0) -> list[dict]:
    """Subjects where the right kidney follows the liver in z (slope 0.8) and x (slope 0.5);
    the spleen is independent; liver volume grows with its depth (a large liver sits low)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        liver = TRUE_MEAN["liver"] + rng.normal(0, [10.0, 6.0, 12.0])
        dl = liver - TRUE_MEAN["liver"]
        kidney = TRUE_MEAN["kidney_right"] + np.array([0.5 * dl[0], 0.0, 0.8 * dl[2]]) + rng.normal(0, [4.0, 4.0, 5.0])
        spleen = TRUE_MEAN["spleen"] + rng.normal(0, 8.0, 3)
        out.append({
            "liver": {"centroid_mm": liver, "volume_ml": 1500.0 * math.exp(-0.02 * dl[2])},
            "kidney_right": {"centroid_mm": kidney, "volume_ml": 150.0 * math.exp(rng.normal(0, 0.1))},
            "spleen": {"centroid_mm": spleen, "volume_ml": 200.0 * math.exp(rng.normal(0, 0.2))},
        })
    return out


def test_fit_recovers_means_and_covariances_with_many_subjects() -> None:
    model = fit_anatomy_model(_phantom_subjects(2000), log_volume=False)
    assert model.shrinkage < 0.002
    m, c = model.centroid_mean_cov("liver")
    np.testing.assert_allclose(m, TRUE_MEAN["liver"], atol=1.0)
    np.testing.assert_allclose(np.sqrt(np.diag(c)), [10.0, 6.0, 12.0], rtol=0.06)
    i_l, i_k = model.centroid_index("liver"), model.centroid_index("kidney_right")
    # cov(kidney_z, liver_z) = 0.8 * 144
    assert model.cov[i_k[2], i_l[2]] == pytest.approx(0.8 * 144.0, rel=0.1)
    assert abs(model.cov[i_k[1], i_l[1]]) < 6.0  # independent axis


def test_conditioning_moves_the_dependent_organ_by_cov_ab_over_cov_aa() -> None:
    model = fit_anatomy_model(_phantom_subjects(2000), log_volume=False)
    i_l, i_k = model.centroid_index("liver"), model.centroid_index("kidney_right")
    mu_l, _ = model.centroid_mean_cov("liver")
    mu_k, cov_k = model.centroid_mean_cov("kidney_right")
    shift = np.array([0.0, 0.0, -20.0])  # the liver placed 20 mm low
    mean, cov = model.conditional({"liver": mu_l + shift}, "kidney_right")
    s_ll = model.cov[np.ix_(i_l, i_l)]
    s_kl = model.cov[np.ix_(i_k, i_l)]
    np.testing.assert_allclose(mean - mu_k, s_kl @ np.linalg.solve(s_ll, shift), atol=1e-9)
    # and that is the phantom's slope: 0.8 * -20 mm in z, nothing in y
    assert mean[2] - mu_k[2] == pytest.approx(-16.0, abs=1.5)
    assert abs(mean[1] - mu_k[1]) < 1.0
    # the conditional is tighter along the coupled axis; the independent spleen does not move
    assert cov[2, 2] < 0.5 * cov_k[2, 2]
    assert cov[2, 2] == pytest.approx(25.0, rel=0.15)
    m_s, _ = model.conditional({"liver": mu_l + shift}, "spleen")
    np.testing.assert_allclose(m_s, model.centroid_mean_cov("spleen")[0], atol=1.0)
    # conditioning on nothing is the marginal
    m0, c0 = model.conditional({}, "kidney_right")
    np.testing.assert_allclose(m0, mu_k)
    np.testing.assert_allclose(c0, cov_k)


def test_conditional_draws_have_the_conditional_statistics() -> None:
    model = fit_anatomy_model(_phantom_subjects(2000), log_volume=False)
    mu_l, _ = model.centroid_mean_cov("liver")
    mean, cov = model.conditional({"liver": mu_l + [10.0, 0.0, 15.0]}, "kidney_right")
    draws = np.random.default_rng(3).multivariate_normal(mean, cov, size=4000)
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=0.5)
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.1 * np.abs(cov).max())


def test_a_large_liver_lowers_the_kidney_through_the_volume_feature() -> None:
    model = fit_anatomy_model(_phantom_subjects(2000), log_volume=True)
    mu_k, _ = model.centroid_mean_cov("kidney_right")
    # liver volume only (no position): 1500 * e^0.4 ml is the phantom's liver 20 mm low
    mean, _ = model.conditional({}, "kidney_right", observed_volume_ml={"liver": 1500.0 * math.exp(0.4)})
    assert mean[2] - mu_k[2] == pytest.approx(-16.0, abs=2.0)


@pytest.mark.parametrize("n", [3, 4, 10])
def test_few_subjects_give_a_positive_definite_covariance(n: int) -> None:
    subjects = _phantom_subjects(n, seed=n)
    model = fit_anatomy_model(subjects, log_volume=True)
    d = len(model.features)
    assert d == 12 and n - 1 < d  # the sample covariance alone would be singular
    w = np.linalg.eigvalsh(model.cov)
    assert w.min() > 0.0
    # smallest eigenvalue at least lam * the smallest variance (the module's guarantee)
    assert w.min() >= model.shrinkage * np.diag(model.cov).min() * (1 - 1e-9)
    assert model.shrinkage == pytest.approx(2.0 / (n - 1 + 2.0))
    # conditioning works and keeps a PD covariance
    mu_l, _ = model.centroid_mean_cov("liver")
    _, cov = model.conditional({"liver": mu_l, "spleen": model.centroid_mean_cov("spleen")[0]}, "kidney_right")
    assert np.linalg.eigvalsh(cov).min() > 0


def test_missing_organs_are_missing_values() -> None:
    subjects = _phantom_subjects(6, seed=1)
    del subjects[0]["spleen"]
    del subjects[1]["spleen"]
    subjects[2]["liver"]["volume_ml"] = None
    model = fit_anatomy_model(subjects, log_volume=True)
    m, _ = model.centroid_mean_cov("spleen")
    np.testing.assert_allclose(m, np.mean([s["spleen"]["centroid_mm"] for s in subjects[2:]], axis=0))
    lv = model.mean[model.features.index("liver.log_volume")]
    assert lv == pytest.approx(np.mean([math.log(s["liver"]["volume_ml"]) for k, s in enumerate(subjects) if k != 2]))
    assert np.linalg.eigvalsh(model.cov).min() > 0


def test_one_subject_gives_the_prior() -> None:
    model = fit_anatomy_model(_phantom_subjects(1), log_volume=False)
    assert model.shrinkage == 1.0
    np.testing.assert_allclose(model.cov, np.eye(9) * 15.0 ** 2)


def test_body_size_scaling() -> None:
    model = fit_anatomy_model(_phantom_subjects(50), log_volume=True)
    big = model.scaled(1.1)
    m, c = model.centroid_mean_cov("liver")
    mb, cb = big.centroid_mean_cov("liver")
    np.testing.assert_allclose(mb, 1.1 * m)
    np.testing.assert_allclose(cb, 1.21 * c)
    j = model.features.index("liver.log_volume")
    assert big.mean[j] == pytest.approx(model.mean[j] + 3 * math.log(1.1))
    assert big.cov[j, j] == pytest.approx(model.cov[j, j])
    with pytest.raises(ValueError, match="body size factor"):
        model.scaled(0.0)


def test_dict_round_trip_through_yaml() -> None:
    model = fit_anatomy_model(_phantom_subjects(4), log_volume=True, note="phantom")
    text = yaml.safe_dump({"anatomy_model": model.to_dict()}, sort_keys=False)
    back = AnatomyModel.from_dict(yaml.safe_load(text)["anatomy_model"])
    assert back.organs == model.organs and back.features == model.features
    assert back.n_subjects == 4 and back.note == "phantom"
    np.testing.assert_allclose(back.mean, model.mean, atol=1e-6)
    np.testing.assert_allclose(back.cov, model.cov, atol=1e-6)
    assert back.to_dict() == model.to_dict()
    np.testing.assert_allclose(back.conditional({"liver": [0, 0, 0]}, "spleen")[0],
                               model.conditional({"liver": [0, 0, 0]}, "spleen")[0], atol=1e-4)


def test_from_dict_names_bad_fields() -> None:
    good = fit_anatomy_model(_phantom_subjects(4), log_volume=False).to_dict()
    with pytest.raises(ConfigError, match="unknown key"):
        AnatomyModel.from_dict({**good, "extra": 1})
    with pytest.raises(ConfigError, match="mean: expected 9 numbers"):
        AnatomyModel.from_dict({**good, "mean": good["mean"][:-1]})
    bad = [row[:] for row in good["cov"]]
    bad[0][0] = -1.0
    with pytest.raises(ConfigError, match="positive definite"):
        AnatomyModel.from_dict({**good, "cov": bad})
    asym = [row[:] for row in good["cov"]]
    asym[0][1] += 50.0
    with pytest.raises(ConfigError, match="symmetric"):
        AnatomyModel.from_dict({**good, "cov": asym})


def test_restricted_is_the_marginal() -> None:
    model = fit_anatomy_model(_phantom_subjects(30), log_volume=True)
    sub = model.restricted(["spleen", "liver", "pancreas"])
    assert sub.organs == ("liver", "spleen")
    m, c = sub.centroid_mean_cov("spleen")
    m0, c0 = model.centroid_mean_cov("spleen")
    np.testing.assert_allclose(m, m0)
    np.testing.assert_allclose(c, c0)


class _Rec:
    def __init__(self, organ: str, subject: str, c, v, truncated=False) -> None:
        self.organ, self.subject_id, self.centroid_mm, self.volume_ml, self.truncated = organ, subject, c, v, truncated


class _Bank:
    """The part of the ShapeBank API the fit reads (organs, shapes(organ), frame_exact)."""

    def __init__(self, recs, exact) -> None:
        self._recs, self.frame_exact = recs, exact

    @property
    def organs(self):
        return sorted({r.organ for r in self._recs})

    def shapes(self, organ):
        return [r for r in self._recs if r.organ == organ]


def test_bank_statistics_skip_truncated_shapes_and_approximate_frames() -> None:
    recs = [_Rec("liver", "s1", (1, 2, 3), 1000.0), _Rec("liver", "s2", (3, 2, 1), 1100.0),
            _Rec("liver", "s3", (9, 9, 9), 900.0), _Rec("aorta", "s1", (0, 0, 0), 100.0, truncated=True),
            _Rec("aorta", "s2", (1, 1, 1), 90.0)]
    stats = bank_statistics(_Bank(recs, {"s1": True, "s2": True, "s3": False}))
    assert len(stats) == 2  # s3's frame is approximate
    assert "aorta" not in stats[0] and stats[1]["aorta"]["centroid_mm"] == (1.0, 1.0, 1.0)
