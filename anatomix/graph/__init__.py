"""The organ graph: which organs a scene holds, where they sit, and how they relate.

A graph file (``graphs/*.yaml``) is validated by :class:`GraphSpec` (pydantic, ``extra="forbid"``)
and turned into an :class:`OrganGraph` (a NetworkX graph inside; no public signature exposes it).
Placement reads it (anchors, parents, order, ranges), evaluation and ``graph check`` measure real
or synthetic label maps against its relations with :mod:`anatomix.relations`.

File format (version 1), all lengths in mm in the bank's BODY FRAME (RAS+: x toward the subject's
right, y anterior, z superior)::

    format_version: 1
    name: abdomen
    body_frame: "..."                # free text, copied from the bank it was learned from
    defaults:                        # used where a relation leaves a field out
      contact_tolerance_mm: 3.0      # contact holds iff surface gap <= this
      contact_max_overlap: 0.05      # contacting organs may still overlap at most this fraction
      avoid_tolerance: 0.01          # avoid (explicit or implicit) holds iff overlap fraction <= this
      inside_tolerance: 0.05         # inside holds iff at least 1 - this of a lies in b
    organs:
      liver:
        label: 6                     # output label value (1..255), unique
        anchor: {mean_mm: [x, y, z], cov_mm: [[..], [..], [..]]}   # centroid distribution
        volume_ml: [min, max]
        required: true               # false: appears with `probability`
        probability: 1.0
        rotation_deg: [[-10, 10], [-10, 10], [-10, 10]]   # about the x, y, z axes
        scale: [0.9, 1.1]            # isotropic scale factor range
        priority: 1                  # where rendered volumes meet, the higher priority wins
    relations:
      - {type: contact, a: gallbladder, b: liver}                 # hard: false by default
      - {type: direction, a: kidney_left, b: kidney_right, direction: left_of, margin_mm: 40}
      - {type: attached_to, a: gallbladder, b: liver,              # b is a's placement parent
         offset: {mean_mm: [..], cov_mm: [[..]..]}}                # a.centroid - b.centroid
      - {type: avoid, a: x, b: y, tolerance: 0.0}
      - {type: inside, a: lesion, b: liver}
    anatomy_model:                   # optional: joint Gaussian of organ centroids / log volumes
      organs: [...]                  # (anatomix.anatomy_model; `graph learn` fits it); placement
      features: [liver.x, ...]       # draws each organ's anchor from it conditioned on the organs
      mean: [...]                    # already placed
      cov: [[...], ...]
      n_subjects: 4
      shrinkage: 0.4

Every number is finite and physically sensible (:mod:`anatomix.graph.schema` states the ranges):
positions and offsets within 1000 mm of the origin, anchor/offset standard deviations <= 300 mm,
volumes <= 10,000 ml, rotations within +-180 degrees, scale factors 0.1-5, tolerances and margins
<= 200 mm, priorities within +-1000.

Relation semantics (measured by :mod:`anatomix.relations`): ``contact`` surface gap (mm) <=
tolerance; ``avoid`` overlap fraction (intersection / smaller volume) <= tolerance; ``inside``
fraction of a inside b >= 1 - tolerance; ``direction`` a <direction> b by more than margin_mm on
centroids; ``attached_to`` a is placed relative to its parent b. Every pair with no contact, avoid
or inside relation gets an implicit hard ``avoid`` (``defaults.avoid_tolerance``), and every contact
pair without one an implicit hard ``avoid`` at the contact's ``max_overlap``. Default
``hard``: contact soft, everything else hard.
"""

from anatomix.graph.check import GraphCheck, check_graph
from anatomix.graph.draw import draw_graph
from anatomix.graph.files import dump_yaml
from anatomix.graph.learn import DEFAULT_OFFSET_PRIOR_STD_MM, DEFAULT_PRIOR_STD_MM, learn_graph
from anatomix.graph.model import OrganGraph, OrganSpec, Relation
from anatomix.graph.schema import FORMAT_VERSION, GraphError, GraphSpec

__all__ = [
    "DEFAULT_OFFSET_PRIOR_STD_MM",
    "DEFAULT_PRIOR_STD_MM",
    "FORMAT_VERSION",
    "GraphCheck",
    "GraphError",
    "GraphSpec",
    "OrganGraph",
    "OrganSpec",
    "Relation",
    "check_graph",
    "draw_graph",
    "dump_yaml",
    "learn_graph",
]
