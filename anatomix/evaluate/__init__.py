"""Anatomical realism of label maps, measured against real ones (``anatomix evaluate``).

A set of synthetic label maps is compared with a set of real ones, organ by organ and pair by
pair, and the same scores are computed for the real set against itself (leave-one-out), which
gives the scale: a perfect synthesizer scores like a real subject.

Every label map is read once (``anatomix.io.read_label_map``: RAS+ (x, y, z) arrays, world mm),
cropped to its foreground and summarised into a :class:`MapSummary` (organ volumes on the
original grid; centroids and the contact graph on a common isotropic evaluation grid, by default
2 mm, by :func:`anatomix.io.resample_label_map`), so maps of any spacing or orientation are
compared in the same units and "touching" means the same thing for all of them. All measurements
are ``anatomix.relations``'.

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

The package: :mod:`.summary` (label maps -> MapSummary), :mod:`.reference` (real distributions),
:mod:`.scoring` (cases, sets, per-pair table, leave-one-out baseline), :mod:`.report` (JSON, figures,
:func:`evaluate`).
"""

from anatomix.evaluate.reference import ReferenceModel, fit_reference
from anatomix.evaluate.report import (
                                       evaluate,
                                       plot_report,
                                       plot_reports,
                                       write_report,
)
from anatomix.evaluate.scoring import (
                                       DIRECTION_RULES,
                                       check_real_laterality,
                                       REPORT_FORMAT_VERSION,
                                       compare,
                                       direction_errors,
                                       midline_x,
                                       pair_table,
                                       real_baseline,
                                       record_violations,
                                       score_set,
)
from anatomix.labels import MIDLINE_SIDE  # re-exported: the organ fact lives in labels
from anatomix.evaluate.summary import (
                                       EvaluationError,
                                       EvaluationWarning,
                                       MapSummary,
                                       Settings,
                                       load_label_set,
                                       load_synthetic_set,
                                       resolve_label_table,
                                       summarise_label_map,
)

__all__ = [
    "DIRECTION_RULES",
    "check_real_laterality",
    "MIDLINE_SIDE",
    "REPORT_FORMAT_VERSION",
    "EvaluationError",
    "EvaluationWarning",
    "MapSummary",
    "ReferenceModel",
    "Settings",
    "compare",
    "direction_errors",
    "evaluate",
    "fit_reference",
    "load_label_set",
    "load_synthetic_set",
    "midline_x",
    "pair_table",
    "plot_report",
    "plot_reports",
    "real_baseline",
    "record_violations",
    "resolve_label_table",
    "score_set",
    "summarise_label_map",
    "write_report",
]
