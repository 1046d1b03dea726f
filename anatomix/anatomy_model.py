"""A joint Gaussian model of organ centroids (and log volumes) in the bank's body frame.

Placement draws organs one after another. This model keeps a virtual subject coherent as a
whole: the distribution of the next organ's centroid is conditioned on the organs already placed
(:meth:`AnatomyModel.conditional`, a Schur complement), so a liver placed low pulls the right
kidney down as it does in real bodies, and a large liver (``observed_volume_ml``) does too where
the subjects show it.

Features, per organ: centroid ``x, y, z`` (mm, body frame: RAS axes, origin the kidney midpoint,
see :data:`anatomix.bank.BODY_FRAME_DEFINITION`) and, optionally, ``log_volume`` (ln ml).

Fitting from few subjects (3-10). With ``n`` subjects and ``D`` = 3-4 features per organ times
13+ organs, the sample covariance has rank at most ``n - 1``: it is regularised in two parts.

- variances: each feature's sample variance is blended with a prior variance as ``prior_weight``
  pseudo-subjects would: ``((n_j - 1) s_jj + w p_j) / (n_j - 1 + w)`` (``n_j`` subjects holding
  the feature; the same rule as the graph's anchor covariances);
- correlations: the pairwise-complete sample correlation matrix (each pair over the subjects that
  hold both; pairs seen in fewer than 2 subjects get 0) is projected onto the positive
  semi-definite cone (eigenvalues clipped at 0, unit diagonal restored) and shrunk toward the
  identity, ``R = (1 - lam) R_sample + lam I`` (Ledoit-Wolf's form with a diagonal target), with
  ``lam = w / (n - 1 + w)`` unless given. The result is positive definite for any ``n`` (its
  smallest eigenvalue is at least ``lam * min variance``).

Missing organs (an organ absent in some subjects) and truncated shapes (their centroid and volume
are biased) are missing values: they do not enter the statistics of that subject.

Body size: :meth:`AnatomyModel.scaled` scales every centroid about the body-frame origin by a
factor (covariance by its square; log volumes shift by ``3 ln factor``).

Serialised with :meth:`AnatomyModel.to_dict` / :meth:`AnatomyModel.from_dict` as plain lists and
floats, the optional top-level ``anatomy_model:`` section of a graph file (:class:`AnatomyModelSpec`).

This module imports nothing of the pipeline (numpy and pydantic only; a bank is read through its
``subjects``/``shapes`` API).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from anatomix.errors import ConfigError, validation_problems

__all__ = [
    "DEFAULT_PRIOR_STD",
    "AnatomyModel",
    "AnatomyModelSpec",
    "fit_anatomy_model",
    "fit_anatomy_model_from_bank",
]

FORMAT_VERSION = 1
AXES = ("x", "y", "z")

#: Prior standard deviations of the variance regularisation, per feature kind.
DEFAULT_PRIOR_STD: Mapping[str, float] = {"centroid_mm": 15.0, "log_volume": 0.25}
#: Pseudo-subjects of the prior (the same weight the graph's anchor covariances use).
DEFAULT_PRIOR_WEIGHT = 2.0


class AnatomyModelSpec(BaseModel):
    """The ``anatomy_model:`` section of a graph file (YAML; plain lists of floats).

    Attributes:
        format_version: 1.
        organs: organ names, in feature order.
        features: feature names ``<organ>.x|y|z|log_volume``, len D.
        mean: (D,) feature means (mm, ln ml).
        cov: (D, D) regularised covariance, symmetric positive definite.
        n_subjects: subjects it was fitted on.
        shrinkage: correlation shrinkage weight used.
        note: free text (provenance, curation).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = 1  # FORMAT_VERSION
    organs: list[str] = Field(min_length=1)
    features: list[str] = Field(min_length=1)
    mean: list[float]
    cov: list[list[float]]
    n_subjects: int = Field(ge=1)
    shrinkage: float = Field(ge=0.0, le=1.0)
    note: str | None = None


def _feature_names(organs: Sequence[str], log_volume: bool) -> list[str]:
    kinds = list(AXES) + (["log_volume"] if log_volume else [])
    return [f"{o}.{k}" for o in organs for k in kinds]


@dataclass(frozen=True, eq=False)
class AnatomyModel:
    """A Gaussian over organ features (see the module docstring). Arrays are read-only.

    Attributes:
        organs: organ names.
        features: ``<organ>.<x|y|z|log_volume>`` per dimension.
        mean: (D,) means: mm for centroid coordinates, ln(ml) for log volumes.
        cov: (D, D) symmetric positive definite covariance.
        n_subjects: subjects the model was fitted on.
        shrinkage: correlation shrinkage weight used in the fit.
        note: provenance.
    """

    organs: tuple[str, ...]
    features: tuple[str, ...]
    mean: np.ndarray
    cov: np.ndarray
    n_subjects: int
    shrinkage: float
    note: str | None = None

    def __post_init__(self) -> None:
        problems = _check(list(self.organs), list(self.features), np.asarray(self.mean), np.asarray(self.cov))
        if problems:
            raise ConfigError("anatomy_model: " + "; ".join(problems))
        for name in ("mean", "cov"):
            a = np.array(getattr(self, name), dtype=np.float64)
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        object.__setattr__(self, "_index", {f: i for i, f in enumerate(self.features)})

    # ---- indices -----------------------------------------------------------------------------

    @property
    def has_log_volume(self) -> bool:
        return any(f.endswith(".log_volume") for f in self.features)

    def centroid_index(self, organ: str) -> np.ndarray:
        """Indices of the organ's x, y, z features."""
        if organ not in self.organs:
            raise KeyError(f"anatomy model: expected one of its organs ({', '.join(self.organs)}); found {organ!r}")
        idx: dict[str, int] = self._index  # type: ignore[attr-defined]
        return np.array([idx[f"{organ}.{a}"] for a in AXES])

    def centroid_mean_cov(self, organ: str) -> tuple[np.ndarray, np.ndarray]:
        """The organ's unconditional centroid mean (3,) and covariance (3, 3), mm."""
        i = self.centroid_index(organ)
        return self.mean[i].copy(), self.cov[np.ix_(i, i)].copy()

    # ---- conditioning ------------------------------------------------------------------------

    def _observed(self, observed: Mapping[str, Sequence[float]],
                  observed_volume_ml: Mapping[str, float] | None) -> tuple[list[int], list[float]]:
        idx: dict[str, int] = self._index  # type: ignore[attr-defined]
        cols: list[int] = []
        vals: list[float] = []
        for organ, c in observed.items():
            if organ not in self.organs:
                continue  # organs the model does not know carry no information here
            v = np.asarray(c, dtype=np.float64).reshape(-1)
            if v.shape != (3,) or not np.all(np.isfinite(v)):
                raise ValueError(f"anatomy model: observed centroid of {organ}: expected 3 finite numbers (mm); "
                                 f"found {c!r}")
            cols.extend(int(j) for j in self.centroid_index(organ))
            vals.extend(float(x) for x in v)
        for organ, ml in (observed_volume_ml or {}).items():
            key = f"{organ}.log_volume"
            if key in idx:
                if not (ml > 0 and math.isfinite(ml)):
                    raise ValueError(f"anatomy model: observed volume of {organ}: expected > 0 ml; found {ml!r}")
                cols.append(idx[key])
                vals.append(math.log(ml))
        return cols, vals

    def conditional(
        self,
        observed: Mapping[str, Sequence[float]],
        organ: str | None = None,
        *,
        observed_volume_ml: Mapping[str, float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of unobserved features given the observed ones (Schur complement).

        ``mean = mu_u + S_uo S_oo^-1 (x_o - mu_o)``, ``cov = S_uu - S_uo S_oo^-1 S_ou``.

        Args:
            observed: organ -> placed centroid (3,), mm, body frame. Organs unknown to the model
                are ignored.
            organ: the next organ: return its centroid's mean (3,) and covariance (3, 3). None:
                every feature of every organ not in ``observed``, in :meth:`unobserved_features`
                order.
            observed_volume_ml: organ -> volume (ml) of placed organs, used when the model has
                log-volume features.

        Raises:
            KeyError: ``organ`` is not in the model.
            ValueError: an observed value is not 3 finite numbers / a volume is not positive.
        """
        cols, vals = self._observed(observed, observed_volume_ml)
        if organ is not None:
            target = self.centroid_index(organ)
            if organ in observed:  # already placed: it is where it was placed
                return np.asarray(observed[organ], dtype=np.float64).reshape(3).copy(), np.zeros((3, 3))
        else:
            target = np.array([self._index[f] for f in self.unobserved_features(observed)], dtype=int)  # type: ignore[attr-defined]
        mu_u = self.mean[target]
        s_uu = self.cov[np.ix_(target, target)]
        if not cols:
            return mu_u.copy(), s_uu.copy()
        o = np.array(cols)
        s_oo = self.cov[np.ix_(o, o)]
        s_uo = self.cov[np.ix_(target, o)]
        gain = np.linalg.solve(s_oo, s_uo.T).T  # S_uo S_oo^-1 (S_oo is SPD)
        mean = mu_u + gain @ (np.asarray(vals) - self.mean[o])
        cov = s_uu - gain @ s_uo.T
        cov = (cov + cov.T) / 2
        return mean, cov

    def unobserved_features(self, observed: Mapping[str, Any]) -> list[str]:
        """Features of the organs not in ``observed`` (model order)."""
        return [f for f in self.features if f.rsplit(".", 1)[0] not in observed]

    def sample(self, *, rng: np.random.Generator, n: int = 1) -> np.ndarray:
        """(n, D) joint draws."""
        return rng.multivariate_normal(self.mean, self.cov, size=n, method="cholesky")

    # ---- body size ---------------------------------------------------------------------------

    def scaled(self, factor: float) -> AnatomyModel:
        """The model of a body ``factor`` times as large (about the body-frame origin)."""
        if not (factor > 0 and math.isfinite(factor)):
            raise ValueError(f"anatomy model: body size factor: expected > 0; found {factor!r}")
        is_c = np.array([not f.endswith(".log_volume") for f in self.features])
        s = np.where(is_c, factor, 1.0)
        mean = np.where(is_c, self.mean * factor, self.mean + 3.0 * math.log(factor))
        cov = self.cov * np.outer(s, s)
        return AnatomyModel(self.organs, self.features, mean, cov, self.n_subjects, self.shrinkage,
                            self.note)

    def restricted(self, organs: Sequence[str]) -> AnatomyModel:
        """The marginal model of some organs (those the model does not know are skipped)."""
        keep = [o for o in self.organs if o in set(organs)]
        feats = [f for f in self.features if f.rsplit(".", 1)[0] in set(keep)]
        idx = np.array([self._index[f] for f in feats], dtype=np.intp)  # type: ignore[attr-defined]
        return AnatomyModel(tuple(keep), tuple(feats), self.mean[idx], self.cov[np.ix_(idx, idx)],
                            self.n_subjects, self.shrinkage, self.note)

    # ---- serialisation -----------------------------------------------------------------------

    def to_dict(self, ndigits: int = 6) -> dict[str, Any]:
        """Plain lists and floats (the ``anatomy_model:`` section of a graph file)."""
        out: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "organs": list(self.organs),
            "features": list(self.features),
            "mean": [round(float(v), ndigits) for v in self.mean],
            "cov": [[round(float(v), ndigits) for v in row] for row in self.cov],
            "n_subjects": int(self.n_subjects),
            "shrinkage": round(float(self.shrinkage), ndigits),
        }
        if self.note:
            out["note"] = self.note
        return out

    @classmethod
    def from_spec(cls, spec: AnatomyModelSpec, source: str = "anatomy_model") -> AnatomyModel:
        mean, cov = np.asarray(spec.mean, dtype=np.float64), np.asarray(spec.cov, dtype=np.float64)
        problems = _check(spec.organs, spec.features, mean, cov)
        if problems:
            raise ConfigError(f"{source}: " + "; ".join(problems))
        cov = (cov + cov.T) / 2  # symmetric up to rounding in the file
        return cls(tuple(spec.organs), tuple(spec.features), mean, cov, spec.n_subjects, spec.shrinkage, spec.note)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "anatomy_model") -> AnatomyModel:
        """Validate and build from :meth:`to_dict`'s layout.

        Raises:
            ConfigError: unknown/missing keys, wrong sizes, non-symmetric or non-positive-definite
                covariance (all named with the field).
        """
        try:
            spec = AnatomyModelSpec.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(f"{source}: " + "; ".join(validation_problems(exc))) from None
        return cls.from_spec(spec, source)


def _check(organs: Sequence[str], features: Sequence[str], mean: np.ndarray, cov: np.ndarray) -> list[str]:
    problems: list[str] = []
    d = len(features)
    if len(set(organs)) != len(organs):
        problems.append("organs: expected unique names; found duplicates")
    if len(set(features)) != d:
        problems.append("features: expected unique names; found duplicates")
    kinds = set(AXES) | {"log_volume"}
    for f in features:
        organ, _, kind = f.rpartition(".")
        if organ not in organs or kind not in kinds:
            problems.append(f"features: expected '<organ>.x|y|z|log_volume' with an organ of `organs`; found {f!r}")
            break
    for o in organs:
        if any(f"{o}.{a}" not in features for a in AXES):
            problems.append(f"features: expected {o}.x, {o}.y and {o}.z for organ {o}; found some missing")
            break
    if mean.shape != (d,):
        problems.append(f"mean: expected {d} numbers (one per feature); found shape {mean.shape}")
    if cov.shape != (d, d):
        problems.append(f"cov: expected a {d}x{d} matrix; found shape {cov.shape}")
    if problems:
        return problems
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        return ["mean/cov: expected finite numbers; found NaN or infinity"]
    scale = max(float(np.abs(cov).max()), 1e-12)
    if not np.allclose(cov, cov.T, atol=1e-5 * scale):
        problems.append("cov: expected a symmetric matrix; found cov != cov^T")
    else:
        try:
            np.linalg.cholesky((cov + cov.T) / 2)
        except np.linalg.LinAlgError:
            problems.append("cov: expected a positive definite matrix; found one that is not "
                            "(refit with `anatomix graph learn`, or raise the prior weight)")
    return problems


# ---- fitting -----------------------------------------------------------------------------------


def _nearest_correlation(r: np.ndarray) -> np.ndarray:
    """Project a symmetric matrix with unit diagonal onto the PSD cone, unit diagonal restored."""
    w, v = np.linalg.eigh((r + r.T) / 2)
    p = (v * np.clip(w, 0.0, None)) @ v.T
    d = np.sqrt(np.clip(np.diag(p), 1e-12, None))
    p = p / np.outer(d, d)
    np.fill_diagonal(p, 1.0)
    return p


def fit_anatomy_model(
    data: Sequence[Mapping[str, Mapping[str, Any]]],
    organs: Sequence[str] | None = None,
    *,
    log_volume: bool = True,
    prior_std: Mapping[str, float] = DEFAULT_PRIOR_STD,
    prior_weight: float = DEFAULT_PRIOR_WEIGHT,
    shrinkage: float | None = None,
    note: str | None = None,
) -> AnatomyModel:
    """Fit the joint model on per-subject organ statistics.

    Args:
        data: one mapping per subject: organ -> ``{"centroid_mm": (3,), "volume_ml": float}``
            (``volume_ml`` optional; None or a missing organ are missing values).
        organs: organs to model (default: every organ seen, sorted).
        log_volume: add one ln(volume ml) feature per organ.
        prior_std: prior standard deviation per feature kind (``centroid_mm``, ``log_volume``).
        prior_weight: pseudo-subjects of the prior in the variance blend and (by default) in the
            correlation shrinkage ``lam = w / (n - 1 + w)``.
        shrinkage: correlation shrinkage weight in [0, 1] instead of the default rule.
        note: provenance text kept in the model.

    Raises:
        ValueError: no subject, an organ seen in no subject, bad prior values.
    """
    n = len(data)
    if n == 0:
        raise ValueError("anatomy model: expected statistics of at least one subject; found none")
    if organs is None:
        organs = sorted({o for s in data for o in s})
    organs = list(dict.fromkeys(organs))
    unseen = [o for o in organs if not any(o in s and s[o].get("centroid_mm") is not None for s in data)]
    if unseen or not organs:
        raise ValueError(f"anatomy model: expected a centroid of each organ in at least one subject; "
                         f"found none for {', '.join(unseen) or '(no organs)'}")
    if prior_weight <= 0 or any(prior_std.get(k, 0) <= 0 for k in ("centroid_mm", "log_volume")):
        raise ValueError(f"anatomy model: expected prior_weight > 0 and prior_std > 0 for centroid_mm and "
                         f"log_volume; found {prior_weight}, {dict(prior_std)}")
    if shrinkage is not None and not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"anatomy model: shrinkage: expected a weight in [0, 1]; found {shrinkage}")
    features = _feature_names(organs, log_volume)
    x = np.full((n, len(features)), np.nan)
    prior_var = np.empty(len(features))
    j = 0
    for o in organs:
        for k in range(3 + int(log_volume)):
            for i, s in enumerate(data):
                rec = s.get(o)
                if rec is None:
                    continue
                if k < 3:
                    c = rec.get("centroid_mm")
                    if c is not None:
                        x[i, j] = float(c[k])
                else:
                    v = rec.get("volume_ml")
                    if v is not None and v > 0:
                        x[i, j] = math.log(float(v))
            prior_var[j] = (prior_std["centroid_mm"] if k < 3 else prior_std["log_volume"]) ** 2
            j += 1
    have = ~np.isnan(x)
    counts = have.sum(axis=0)
    mean = np.array([x[have[:, j], j].mean() if counts[j] else np.nan for j in range(x.shape[1])])
    # organs with centroids but no volume anywhere: log-volume mean unknown -> drop that feature
    keep = np.isfinite(mean)
    if not keep.all():
        features = [f for f, k in zip(features, keep) if k]
        x, have, counts, mean, prior_var = x[:, keep], have[:, keep], counts[keep], mean[keep], prior_var[keep]
    dev = np.where(have, x - mean, 0.0)
    d = len(features)
    ss = (dev ** 2).sum(axis=0)
    var = (ss + prior_weight * prior_var) / (np.clip(counts - 1, 0, None) + prior_weight)
    # pairwise-complete correlation
    both = have.T.astype(float) @ have.astype(float)  # subjects holding both features
    cross = dev.T @ dev
    r = np.zeros((d, d))
    ok = both >= 2
    # standard deviations over the subjects of each pair, for a correlation in [-1, 1]
    sq = (dev ** 2).T @ have.astype(float)  # sq[a, b] = sum over subjects holding b of dev_a^2
    denom = np.sqrt(np.clip(sq * sq.T, 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(ok & (denom > 0), cross / np.where(denom > 0, denom, 1.0), 0.0)
    r = np.clip(r, -1.0, 1.0)
    np.fill_diagonal(r, 1.0)
    r = _nearest_correlation(r)
    lam = float(prior_weight / (n - 1 + prior_weight)) if shrinkage is None else float(shrinkage)
    r = (1.0 - lam) * r + lam * np.eye(d)
    sd = np.sqrt(var)
    cov = r * np.outer(sd, sd)
    return AnatomyModel(tuple(organs), tuple(features), mean, (cov + cov.T) / 2, n, lam, note)


def bank_statistics(bank: Any, organs: Sequence[str] | None = None, *,
                    exact_frames_only: bool = True) -> list[dict[str, dict[str, Any]]]:
    """Per-subject organ statistics from a ShapeBank's manifest (body-frame centroids, volumes).

    Truncated shapes (cut by the scan's field of view) give no centroid and no volume. Subjects
    whose body frame is approximate (manifest ``frame_exact: false``) are left out when
    ``exact_frames_only`` and at least two subjects have an exact frame.
    """
    wanted = set(bank.organs if organs is None else organs)
    exact = dict(bank.frame_exact)
    by_subject: dict[str, dict[str, dict[str, Any]]] = {}
    for organ in sorted(wanted):
        for rec in bank.shapes(organ):
            if rec.truncated:
                by_subject.setdefault(str(rec.subject_id), {})
                continue
            by_subject.setdefault(str(rec.subject_id), {})[organ] = {
                "centroid_mm": tuple(float(v) for v in rec.centroid_mm),
                "volume_ml": float(rec.volume_ml),
            }
    subjects = sorted(by_subject)
    if exact_frames_only and sum(exact.get(s, True) for s in subjects) >= 2:
        subjects = [s for s in subjects if exact.get(s, True)]
    return [by_subject[s] for s in subjects]


def fit_anatomy_model_from_bank(
    bank: Any,
    organs: Sequence[str] | None = None,
    *,
    log_volume: bool = True,
    prior_std: Mapping[str, float] = DEFAULT_PRIOR_STD,
    prior_weight: float = DEFAULT_PRIOR_WEIGHT,
    shrinkage: float | None = None,
) -> AnatomyModel:
    """Fit :class:`AnatomyModel` on a ShapeBank's per-shape centroids and volumes (body frame).

    Organs whose shapes are all truncated get no statistics and are left out of the model.

    Raises:
        ValueError: the bank holds no complete shape of any requested organ.
    """
    stats = bank_statistics(bank, organs)
    seen = sorted({o for s in stats for o in s})
    if organs is not None:
        seen = [o for o in organs if o in set(seen)]
    return fit_anatomy_model(stats, seen, log_volume=log_volume, prior_std=prior_std,
                             prior_weight=prior_weight, shrinkage=shrinkage,
                             note=f"fitted on {len(stats)} bank subject(s) (complete shapes only)")
