"""The runtime organ graph: organs and typed relations with every default resolved (NetworkX inside)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml
from pydantic import ValidationError

from anatomix import relations as rel
from anatomix.anatomy_model import AnatomyModel
from anatomix.errors import ConfigError
from anatomix.graph.files import cross_problems, load_yaml, pydantic_problems, dump_yaml
from anatomix.graph.schema import Defaults, Gaussian3, GraphError, GraphSpec
from anatomix.labels import HOLLOW_ORGANS


def _ro(a: Any) -> np.ndarray:
    arr = np.array(a, dtype=np.float64)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class OrganSpec:
    """One organ as placement reads it. Arrays are read-only float64.

    Attributes:
        name: vocabulary name.
        label: output label value.
        anchor_mean_mm: (3,) centroid mean, body frame.
        anchor_cov_mm: (3, 3) centroid covariance, mm^2.
        volume_ml: (min, max).
        required: always present; otherwise present with ``probability``.
        probability: 1.0 for required organs.
        rotation_deg: (3, 2) [min, max] rotation about the x, y, z axes.
        scale: (min, max) isotropic scale factor.
        priority: higher wins where rendered volumes meet.
        parent: the attached_to parent, or None for a root.
        offset_mean_mm: (3,) mean of centroid - parent centroid (None for a root).
        offset_cov_mm: (3, 3) covariance of that offset (None for a root).
        max_bulge_mm: how far contact closing may bulge the organ's surface (mm; the graph's
            hollow / solid default unless the organ sets it).
    """

    name: str
    label: int
    anchor_mean_mm: np.ndarray
    anchor_cov_mm: np.ndarray
    volume_ml: tuple[float, float]
    required: bool
    probability: float
    rotation_deg: np.ndarray
    scale: tuple[float, float]
    priority: int
    parent: str | None = None
    offset_mean_mm: np.ndarray | None = None
    offset_cov_mm: np.ndarray | None = None
    max_bulge_mm: float = 0.0
    note: str | None = None

    @property
    def typical_volume_ml(self) -> float:
        """Geometric mean of the volume range (used to order ties, largest first)."""
        return float(math.sqrt(self.volume_ml[0] * self.volume_ml[1]))


@dataclass(frozen=True)
class Relation:
    """One relation, explicit or implicit, with every default resolved.

    ``type``: contact | avoid | inside | direction | attached_to. ``a``/``b``: organ names (for
    attached_to, ``b`` is ``a``'s parent; inside: ``a`` inside ``b``; direction: ``a`` <direction>
    ``b``). ``tolerance``: contact gap mm / avoid overlap fraction / inside fraction outside
    allowed (0 for direction and attached_to). ``max_overlap``: contact pairs only.
    """

    type: str
    a: str
    b: str
    hard: bool
    tolerance: float = 0.0
    direction: str | None = None
    margin_mm: float = 0.0
    max_overlap: float | None = None
    implicit: bool = False
    note: str | None = None

    def holds(self, value: float) -> bool:
        """Judge a measured value (gap mm, overlap fraction, inside fraction or margin mm)."""
        return rel.relation_holds(self.type, value, tolerance=self.tolerance, margin_mm=self.margin_mm)

    def describe(self) -> str:
        if self.type == "direction":
            return f"{self.a} {self.direction} {self.b} (margin {self.margin_mm:g} mm)"
        if self.type == "attached_to":
            return f"{self.a} attached_to {self.b}"
        unit = " mm" if self.type == "contact" else ""
        return f"{self.type} {self.a}-{self.b} (tolerance {self.tolerance:g}{unit})"


class OrganGraph:
    """An organ graph: organs (nodes) and typed relations (edges). NetworkX stays inside.

    Build with :meth:`load`, :meth:`from_dict` or :meth:`from_spec`; all validation problems are
    raised together as one :class:`GraphError`.
    """

    def __init__(self, spec: GraphSpec, source: str = "<graph>") -> None:
        import networkx as nx

        problems = cross_problems(spec.model_dump(mode="python"), source)
        self._anatomy: AnatomyModel | None = None
        if spec.anatomy_model is not None:
            unknown = sorted(set(spec.anatomy_model.organs) - set(spec.organs))
            if unknown:
                problems.append(f"{source}: anatomy_model.organs: expected organs of the graph; found {unknown}")
            else:
                try:
                    self._anatomy = AnatomyModel.from_spec(spec.anatomy_model, f"{source}: anatomy_model")
                except ConfigError as exc:
                    problems.append(str(exc))
        if problems:
            raise GraphError(problems, source)
        self._spec = spec
        self._source = source
        d = spec.defaults
        self._explicit: list[Relation] = []
        parent_of: dict[str, str] = {}
        offsets: dict[str, Gaussian3 | None] = {}
        for r in spec.relations:
            if r.type == "contact":
                tol = d.contact_tolerance_mm if r.tolerance is None else r.tolerance
                mo = d.contact_max_overlap if r.max_overlap is None else r.max_overlap
                hard = False if r.hard is None else r.hard
            elif r.type == "avoid":
                tol, mo = (d.avoid_tolerance if r.tolerance is None else r.tolerance), None
                hard = True if r.hard is None else r.hard
            elif r.type == "inside":
                tol, mo = (d.inside_tolerance if r.tolerance is None else r.tolerance), None
                hard = True if r.hard is None else r.hard
            else:
                tol, mo = (0.0 if r.tolerance is None else r.tolerance), None
                hard = True if r.hard is None else r.hard
            if r.type == "attached_to":
                parent_of[r.a] = r.b
                offsets[r.a] = r.offset
            self._explicit.append(
                Relation(r.type, r.a, r.b, hard, float(tol), r.direction, float(r.margin_mm), mo, False, r.note)
            )
        self._organs: dict[str, OrganSpec] = {}
        for name, e in spec.organs.items():
            parent = parent_of.get(name)
            om = oc = None
            if parent is not None:
                off = offsets.get(name)
                if off is not None:
                    om, oc = _ro(off.mean_mm), _ro(off.cov_mm)
                else:  # derived from the two anchors, assuming independence
                    p = spec.organs[parent]
                    om = _ro(np.subtract(e.anchor.mean_mm, p.anchor.mean_mm))
                    oc = _ro(np.add(e.anchor.cov_mm, p.anchor.cov_mm))
            self._organs[name] = OrganSpec(
                name=name,
                label=e.label,
                anchor_mean_mm=_ro(e.anchor.mean_mm),
                anchor_cov_mm=_ro(e.anchor.cov_mm),
                volume_ml=(float(e.volume_ml[0]), float(e.volume_ml[1])),
                required=e.required,
                probability=float(e.probability),
                rotation_deg=_ro(e.rotation_deg),
                scale=(float(e.scale[0]), float(e.scale[1])),
                priority=int(e.priority),
                parent=parent,
                offset_mean_mm=om,
                offset_cov_mm=oc,
                max_bulge_mm=float(e.max_bulge_mm if e.max_bulge_mm is not None else
                                   d.hollow_bulge_mm if name in HOLLOW_ORGANS else d.solid_bulge_mm),
                note=e.note,
            )
        g = nx.MultiDiGraph()
        for name in self._organs:
            g.add_node(name)
        for relation in self._explicit:
            g.add_edge(relation.a, relation.b, key=len(g.edges), relation=relation)
        self._g = g
        tree = nx.DiGraph()
        tree.add_nodes_from(self._organs)
        tree.add_edges_from((p, c) for c, p in parent_of.items())
        order = list(
            nx.lexicographical_topological_sort(
                tree, key=lambda n: (-self._organs[n].typical_volume_ml, n)
            )
        )
        self._order = order
        related = {frozenset((r.a, r.b)) for r in self._explicit if r.type in ("contact", "avoid", "inside")}
        names = list(self._organs)
        self._implicit = [
            Relation("avoid", a, b, True, float(d.avoid_tolerance), implicit=True)
            for i, a in enumerate(names)
            for b in names[i + 1:]
            if frozenset((a, b)) not in related
        ]
        # contact partners touch, their volumes overlap by at most the contact's max_overlap: a hard
        # implicit avoid (pairs in placement order; an explicit avoid or inside relation takes its place)
        no_overlap = {frozenset((r.a, r.b)) for r in self._explicit + self._implicit if r.type in ("avoid", "inside")}
        contact_overlap = {frozenset((r.a, r.b)): r.max_overlap for r in self._explicit if r.type == "contact"}
        for i, a in enumerate(order):
            for b in order[i + 1:]:
                pair = frozenset((a, b))
                if pair in contact_overlap and pair not in no_overlap:
                    self._implicit.append(Relation("avoid", a, b, True, float(contact_overlap[pair] or 0.0),
                                                   implicit=True))

    # -- construction --

    @classmethod
    def from_spec(cls, spec: GraphSpec, source: str = "<graph>") -> "OrganGraph":
        return cls(spec, source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<graph>", _extra_problems: Sequence[str] = ()) -> "OrganGraph":
        """Validate a plain dict (as read from YAML); every problem raised together."""
        problems = list(_extra_problems)
        if not isinstance(data, dict):
            raise GraphError(
                problems + [f"{source}: (top level): expected a mapping with `organs` and `relations`; "
                            f"found {type(data).__name__}"], source)
        spec = None
        try:
            spec = GraphSpec.model_validate(data)
        except ValidationError as e:
            problems += pydantic_problems(e, source)
        problems += cross_problems(data, source)
        if problems:
            raise GraphError(problems, source)
        assert spec is not None
        return cls(spec, source)

    @classmethod
    def load(cls, path: str | Path) -> "OrganGraph":
        """Read and validate a graph YAML file.

        Raises:
            GraphError: the file is missing, not YAML, or invalid (every problem listed).
        """
        p = Path(path)
        if not p.is_file():
            raise GraphError([f"{p}: expected an organ graph YAML file; found no such file"], str(p))
        try:
            data, dups = load_yaml(p)
        except yaml.YAMLError as e:
            raise GraphError([f"{p}: expected valid YAML; found a syntax error: {e}"], str(p)) from None
        return cls.from_dict(data, str(p), [f"{p}: {d}" for d in dups])

    def to_dict(self) -> dict:
        """The graph file content as plain data (None fields left out)."""
        d = self._spec.model_dump(mode="json", exclude_none=True)
        for r in d.get("relations", []):
            if r.get("type") != "direction" and r.get("margin_mm") == 0.0:
                del r["margin_mm"]
        return d

    def save(self, path: str | Path, header: str | None = None) -> None:
        """Write the graph as YAML (atomic: temp file + rename). ``header`` becomes a comment block."""
        from anatomix.io import atomic_write_text

        text = dump_yaml(self.to_dict())
        if header:
            text = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines()) + text
        atomic_write_text(path, text)

    # -- queries --

    @property
    def spec(self) -> GraphSpec:
        return self._spec

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def learned_from_bank(self) -> str | None:
        """Content hash of the shape bank the graph was learned from (``graph learn``), or None."""
        return self._spec.learned_from_bank

    @property
    def anatomy_model(self) -> AnatomyModel | None:
        """The joint anatomy model of the file's ``anatomy_model:`` section, if any."""
        return self._anatomy

    @property
    def source(self) -> str:
        return self._source

    @property
    def defaults(self) -> Defaults:
        return self._spec.defaults

    @property
    def organs(self) -> list[str]:
        """Organ names in file order."""
        return list(self._organs)

    def __contains__(self, name: object) -> bool:
        return name in self._organs

    def __len__(self) -> int:
        return len(self._organs)

    def organ(self, name: str) -> OrganSpec:
        """The organ's spec. Raises KeyError (naming the organs) if absent."""
        try:
            return self._organs[name]
        except KeyError:
            raise KeyError(f"organ {name!r} is not in graph {self.name!r}; it has {', '.join(self._organs)}") from None

    def parent(self, organ: str) -> str | None:
        """The attached_to parent of ``organ`` (None for a root)."""
        return self.organ(organ).parent

    def children(self, organ: str) -> list[str]:
        return [n for n in self._order if self._organs[n].parent == organ]

    def placement_order(self) -> list[str]:
        """Topological order of attached_to (parents first), ties broken largest volume first, then name."""
        return list(self._order)

    def relations(self, organ: str | None = None, *, implicit: bool = True) -> list[Relation]:
        """Relations (explicit first, then implicit avoids), optionally only those involving ``organ``."""
        out = self._explicit + (self._implicit if implicit else [])
        if organ is not None:
            self.organ(organ)
            out = [r for r in out if organ in (r.a, r.b)]
        return list(out)

    def relations_between(self, a: str, b: str, *, implicit: bool = True) -> list[Relation]:
        return [r for r in self.relations(a, implicit=implicit) if {r.a, r.b} == {a, b}]

    def neighbours(self, organ: str) -> list[str]:
        """Organs with an explicit relation to ``organ``."""
        self.organ(organ)
        return sorted(set(self._g.successors(organ)) | set(self._g.predecessors(organ)))

    def label_table(self) -> dict[int, str]:
        """Output label value -> organ name, sorted by value."""
        return dict(sorted((o.label, o.name) for o in self._organs.values()))

    def __repr__(self) -> str:
        return f"OrganGraph({self.name!r}, {len(self._organs)} organs, {len(self._explicit)} relations)"
