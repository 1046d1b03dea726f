"""Sequential, structure-aware placement of bank shapes: ``sample_scene(graph, bank, rng, config) -> Scene``.

A Scene (:mod:`anatomix.scene`) is pure parameters (frozen pydantic, JSON-able): for every placed
organ the bank shape (and the second subject's shape it is blended with in SDF space), scale,
rotation, translation and elastic deformation, plus the constraint report. Rendering it
(:mod:`anatomix.render`) is deterministic.

Placement reads the :class:`~anatomix.graph.OrganGraph` and the :class:`~anatomix.bank.ShapeBank`
directly: every relation, default and implicit avoid comes from ``graph.relations()``; every
measurement from :mod:`anatomix.relations`. The package's modules follow the algorithm:
``_draws`` (a shape variant), ``_lattice`` (its SDF on the scoring lattice), ``_search`` (the
candidate search of one organ), ``_close`` (contact closing), ``_solver`` (organs in order, the
scene and its report).

Algorithm (``placement: structured``):

1. A virtual subject: ``body_scale`` drawn in ``config.body_scale``; anchors and parent offsets
   are multiplied by it, organ scales too.
2. Organs in ``graph.placement_order()``; an optional organ appears with its graph probability.
3. For each organ, up to ``shape_attempts`` shape draws: a bank shape (complete shapes preferred
   over truncated ones), with probability ``interpolation_probability`` blended with another
   subject's shape of the same organ (crops aligned about their centroids, SDFs mixed with a
   uniform weight), a scale and rotation within the graph's ranges (proper rotations only, no
   mirroring), and a smooth random elastic deformation (a few long-wavelength sine terms).
   The organ's SDF is evaluated once on a coarse lattice (``score_spacing_mm``, default 3 mm) in
   its bounding box.
4. ``candidates`` positions are drawn from the anchor (or, for an organ with an ``attached_to``
   parent, from the parent's placed centroid plus the graph's offset statistics), snapped to the
   lattice so every candidate reuses that one evaluation (integer shifts).
5. Each candidate is measured against every relation with the organs already placed (explicit
   ones and the graph's implicit avoids: between unrelated pairs, and at ``max_overlap`` between
   contact partners), with the definitions of
   :mod:`anatomix.relations`: hard relations reject (avoid: overlap fraction above tolerance;
   direction: centroid margin; inside: inside fraction), soft ones rank (contact: surface gap;
   anchor: Mahalanobis distance). The best valid candidate is then moved towards its unmet
   contact partners, one lattice step at a time, while every hard relation keeps holding.
6. No valid candidate: a new shape draw; after ``shape_attempts``, an optional organ is dropped
   and a required one is recorded as failed (and left out: a missing organ is less wrong than
   an overlapping one).
7. Contact closing (``contact_closing``, default on): each contact still open is closed by two
   smooth surface bulges in SDF space (:class:`~anatomix.scene.SurfaceBulge`), the gap shared by
   the organs' ``max_bulge_mm`` (hollow viscera yield most), kept only where every hard relation
   of both organs still holds and their soft penalty does not grow (``_close``).

The constraint report is measured at the end with :mod:`anatomix.relations` on the lattice
SDFs, for every relation of the graph between organs present (implicit avoids included).

``placement: random`` (ablation, like FDIF/PrimGeoSeg placing primitives): shapes at uniform
random positions inside the body box and random rotations, no constraint check; the report
is still measured, so the violations show.
"""

from anatomix.config import PlacementConfig
from anatomix.placement._solver import check_inputs, missing_organs, sample_scene
from anatomix.scene import ElasticTerm, PlacedOrgan, RelationCheck, Scene

__all__ = [
    "ElasticTerm",
    "PlacedOrgan",
    "PlacementConfig",
    "RelationCheck",
    "Scene",
    "check_inputs",
    "missing_organs",
    "sample_scene",
]

