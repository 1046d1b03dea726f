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

Relation semantics (measured by :mod:`anatomix.relations`): ``contact`` surface gap (mm) <=
tolerance; ``avoid`` overlap fraction (intersection / smaller volume) <= tolerance; ``inside``
fraction of a inside b >= 1 - tolerance; ``direction`` a <direction> b by more than margin_mm on
centroids; ``attached_to`` a is placed relative to its parent b. Every pair with no contact, avoid
or inside relation gets an implicit hard ``avoid`` (``defaults.avoid_tolerance``). Default
``hard``: contact soft, everything else hard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from anatomix import relations as rel
from anatomix.anatomy_model import AnatomyModel, AnatomyModelSpec, fit_anatomy_model_from_bank
from anatomix.errors import ConfigError
from anatomix.labels import PRESETS, VOCABULARY, closest_organs

__all__ = [
    "DEFAULT_PRIOR_STD_MM",
    "DEFAULT_OFFSET_PRIOR_STD_MM",
    "GraphCheck",
    "GraphError",
    "GraphSpec",
    "OrganGraph",
    "OrganSpec",
    "Relation",
    "check_graph",
    "draw_graph",
    "learn_graph",
]

FORMAT_VERSION = 1

#: Prior standard deviation (mm, per axis) that regularises learned anchor covariances: with n
#: subjects, cov = ((n - 1) * S + PRIOR_WEIGHT * diag(std^2)) / (n - 1 + PRIOR_WEIGHT), so one
#: subject gives exactly the prior and many subjects the sample covariance.
DEFAULT_PRIOR_STD_MM = 10.0
#: The same for offsets of a child's centroid from its attached_to parent's (tighter: the
#: parent already carries the body-level variation).
DEFAULT_OFFSET_PRIOR_STD_MM = 5.0
PRIOR_WEIGHT = 2.0

# Output label convention for learned graphs: BTCV's 13 values, then duodenum 14, then the rest
# in TotalSegmentator order (only organs absent from BTCV get new values).
_BTCV = dict((v, k) for k, v in PRESETS["btcv"].items())
_EXTRA_LABELS = {"duodenum": 14}


class GraphError(ConfigError):
    """A graph file or graph object is invalid; ``problems`` lists every problem found.

    Each problem names the file, the field path, what was expected and what was found.
    """

    def __init__(self, problems: list[str], source: str = "graph") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in {source}:\n{lines}")


# ---- schema (pydantic) ------------------------------------------------------------------------


def _check_range(v: tuple[float, float]) -> tuple[float, float]:
    lo, hi = v
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"expected finite [min, max], found {list(v)}")
    if lo > hi:
        raise ValueError(f"expected [min, max] with min <= max, found min {lo} > max {hi}")
    return v


def _check_positive_range(v: tuple[float, float]) -> tuple[float, float]:
    _check_range(v)
    if v[0] <= 0:
        raise ValueError(f"expected a range of positive values, found {list(v)}")
    return v


def _check_cov(v: tuple[tuple[float, float, float], ...]) -> tuple[tuple[float, float, float], ...]:
    c = np.asarray(v, dtype=np.float64)
    if not np.all(np.isfinite(c)):
        raise ValueError("expected a finite 3x3 covariance (mm^2), found non-finite entries")
    if not np.allclose(c, c.T, rtol=1e-6, atol=1e-6):
        raise ValueError(f"expected a symmetric 3x3 covariance (mm^2), found {c.tolist()}")
    w = np.linalg.eigvalsh(0.5 * (c + c.T))
    if w.min() <= 0:
        raise ValueError(
            "expected a positive-definite 3x3 covariance (mm^2), found eigenvalues "
            f"{[round(float(x), 4) for x in w]}"
        )
    return v


Range = Annotated[tuple[float, float], AfterValidator(_check_range)]
PositiveRange = Annotated[tuple[float, float], AfterValidator(_check_positive_range)]
Vec3 = tuple[float, float, float]
Cov3 = Annotated[tuple[Vec3, Vec3, Vec3], AfterValidator(_check_cov)]
RelationType = Literal["contact", "avoid", "inside", "direction", "attached_to"]
Direction = Literal["left_of", "right_of", "above", "below", "anterior_to", "posterior_to"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gaussian3(_Strict):
    """A 3D normal distribution in mm: ``mean_mm`` (3) and ``cov_mm`` (3x3, mm^2, SPD)."""

    mean_mm: Vec3
    cov_mm: Cov3


class OrganEntry(_Strict):
    """One organ of the graph file (see the module docstring)."""

    label: int = Field(ge=1, le=255)
    anchor: Gaussian3
    volume_ml: PositiveRange
    required: bool = True
    probability: float = Field(default=1.0, gt=0.0, le=1.0)
    rotation_deg: tuple[Range, Range, Range] = ((-10.0, 10.0), (-10.0, 10.0), (-10.0, 10.0))
    scale: PositiveRange = (0.9, 1.1)
    priority: int = 0
    note: str | None = None

    @model_validator(mode="after")
    def _required_means_certain(self) -> "OrganEntry":
        if self.required and self.probability != 1.0:
            raise ValueError(
                f"expected probability 1 for a required organ (or required: false for an optional one); "
                f"found required: true with probability {self.probability}"
            )
        return self


class RelationEntry(_Strict):
    """One relation of the graph file (see the module docstring)."""

    type: RelationType
    a: str
    b: str
    hard: bool | None = None
    tolerance: float | None = Field(default=None, ge=0.0)
    direction: Direction | None = None
    margin_mm: float = 0.0
    max_overlap: float | None = Field(default=None, ge=0.0, le=1.0)
    offset: Gaussian3 | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _fields_fit_type(self) -> "RelationEntry":
        problems = []
        if self.a == self.b:
            problems.append(f"expected two different organs, found a = b = {self.a!r}")
        if self.type == "direction" and self.direction is None:
            problems.append("expected `direction` (left_of, right_of, above, below, anterior_to, posterior_to) "
                            "for a direction relation, found none")
        if self.type != "direction" and self.direction is not None:
            problems.append(f"expected no `direction` on a {self.type} relation (direction relations only); found one")
        if self.type != "attached_to" and self.offset is not None:
            problems.append(f"expected no `offset` on a {self.type} relation (attached_to only); found one")
        if self.type != "contact" and self.max_overlap is not None:
            problems.append(f"expected no `max_overlap` on a {self.type} relation (contact only); found one")
        if self.type in ("inside", "avoid") and self.tolerance is not None and self.tolerance > 1:
            problems.append(f"expected an overlap fraction tolerance in [0, 1] for {self.type}, found {self.tolerance}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Defaults(_Strict):
    """Graph-wide defaults for relation fields left out."""

    contact_tolerance_mm: float = Field(default=3.0, ge=0.0)
    contact_max_overlap: float = Field(default=0.05, ge=0.0, le=1.0)
    avoid_tolerance: float = Field(default=0.01, ge=0.0, le=1.0)
    inside_tolerance: float = Field(default=0.05, ge=0.0, le=1.0)


class GraphSpec(_Strict):
    """The YAML schema of an organ graph (``extra="forbid"`` everywhere)."""

    format_version: Literal[1] = FORMAT_VERSION
    name: str = "graph"
    description: str | None = None
    body_frame: str | None = None
    defaults: Defaults = Defaults()
    organs: dict[str, OrganEntry] = Field(min_length=1)
    relations: list[RelationEntry] = []
    anatomy_model: AnatomyModelSpec | None = None


# ---- runtime objects ----------------------------------------------------------------------------


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


# ---- YAML loading with duplicate-key detection -------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that records duplicate mapping keys instead of silently keeping the last."""

    duplicates: list[str]


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in seen:
                loader.duplicates.append(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
        except TypeError:
            pass
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(path: Path) -> tuple[Any, list[str]]:
    text = path.read_text(encoding="utf-8")
    loader = _Loader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    return data, loader.duplicates


def _fmt_loc(loc: Iterable[Any]) -> str:
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "(top level)"


def _short(v: Any, n: int = 80) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def _allowed_keys(loc: Sequence[Any]) -> list[str] | None:
    """The field names allowed at the model that contains ``loc[-1]`` (for unknown-key hints)."""
    parent = loc[:-1]
    model: Any = GraphSpec
    i = 0
    while i < len(parent):
        p = parent[i]
        if model is GraphSpec and p == "organs":
            model, i = OrganEntry, i + 2
            continue
        if model is GraphSpec and p == "relations":
            model, i = RelationEntry, i + 2
            continue
        if model is GraphSpec and p == "defaults":
            model, i = Defaults, i + 1
            continue
        if model in (OrganEntry,) and p == "anchor":
            model, i = Gaussian3, i + 1
            continue
        if model in (RelationEntry,) and p == "offset":
            model, i = Gaussian3, i + 1
            continue
        return None
    return sorted(model.model_fields)


def _pydantic_problems(err: ValidationError, source: str) -> list[str]:
    problems = []
    for e in err.errors():
        loc = tuple(e["loc"])
        path = _fmt_loc(loc)
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc)
            exp = f"one of the known keys ({', '.join(allowed)})" if allowed else "a known key"
            problems.append(f"{source}: {path}: unknown key; expected {exp}; found {_short(loc[-1])}")
            continue
        msg = e["msg"]
        if msg.startswith("Value error, "):  # our validators word the whole "expected ..., found ..."
            problems.append(f"{source}: {path}: {msg[len('Value error, '):]}")
            continue
        if e["type"] == "missing":
            problems.append(f"{source}: {path}: expected this required field; found nothing")
            continue
        problems.append(f"{source}: {path}: expected {msg[0].lower() + msg[1:]}; found {_short(e.get('input'))}")
    return problems


def _cross_problems(raw: Any, source: str) -> list[str]:
    """Checks between fields, run on the raw dict so they report even if pydantic also fails."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        return problems
    organs = raw.get("organs")
    names: set[str] = set()
    if isinstance(organs, dict):
        labels: dict[Any, str] = {}
        for name, entry in organs.items():
            names.add(str(name))
            if str(name) not in VOCABULARY:
                close = closest_organs(str(name))
                hint = f" (closest: {', '.join(close)})" if close else ""
                problems.append(
                    f"{source}: organs.{name}: expected an organ name from anatomix.labels.VOCABULARY{hint}; "
                    f"found {name!r}"
                )
            if isinstance(entry, dict) and "label" in entry:
                lab = entry["label"]
                try:
                    hash(lab)
                except TypeError:
                    continue
                if lab in labels:
                    problems.append(
                        f"{source}: organs.{name}.label: expected a label value no other organ uses; "
                        f"found {lab!r}, already the label of {labels[lab]!r}"
                    )
                else:
                    labels[lab] = str(name)
    rels = raw.get("relations")
    if not isinstance(rels, list):
        return problems
    pair_types: dict[frozenset, dict[str, int]] = {}
    parents: dict[str, tuple[str, int]] = {}
    directions: dict[tuple[str, str, str], int] = {}
    for i, r in enumerate(rels):
        if not isinstance(r, dict):
            continue
        a, b, t = r.get("a"), r.get("b"), r.get("type")
        for key, v in (("a", a), ("b", b)):
            if isinstance(v, str) and organs is not None and v not in names:
                close = [n for n in closest_organs(v) if n in names] or sorted(names)[:3]
                problems.append(
                    f"{source}: relations[{i}].{key}: expected an organ declared under `organs` "
                    f"(closest declared: {', '.join(close)}); found {v!r}"
                )
        if not (isinstance(a, str) and isinstance(b, str) and a != b):
            continue
        pair = frozenset((a, b))
        if t in ("contact", "avoid", "inside"):
            seen = pair_types.setdefault(pair, {})
            if t == "contact" and "avoid" in seen or t == "avoid" and "contact" in seen:
                other = seen.get("avoid", seen.get("contact"))
                problems.append(
                    f"{source}: relations[{i}]: expected either contact or avoid between {a} and {b}, "
                    f"found both (relations[{other}] and relations[{i}])"
                )
            seen.setdefault(t, i)
        if t == "attached_to":
            if a in parents:
                problems.append(
                    f"{source}: relations[{i}]: expected at most one attached_to parent per organ; "
                    f"found {a!r} attached to {parents[a][0]!r} (relations[{parents[a][1]}]) and to {b!r}"
                )
            else:
                parents[a] = (b, i)
        if t == "direction" and isinstance(r.get("direction"), str):
            d = r["direction"]
            opp = rel.OPPOSITE_DIRECTION.get(d)
            contradiction = directions.get((b, a, d)) if opp else None
            if contradiction is None and opp:
                contradiction = directions.get((a, b, opp))
            if contradiction is not None:
                problems.append(
                    f"{source}: relations[{i}]: expected directions that can hold together; found "
                    f"{a} {d} {b} contradicting relations[{contradiction}]"
                )
            directions.setdefault((a, b, d), i)
    # cycles in attached_to
    reported: set[frozenset] = set()
    for start in parents:
        chain = [start]
        node = start
        while node in parents:
            node = parents[node][0]
            if node in chain:
                cyc = chain[chain.index(node):]
                key = frozenset(cyc)
                if key not in reported:
                    reported.add(key)
                    idx = sorted(parents[c][1] for c in cyc)
                    where = ", ".join(f"relations[{j}]" for j in idx)
                    problems.append(
                        f"{source}: relations: expected attached_to edges without a cycle; found the cycle "
                        f"{' -> '.join(cyc + [node])} ({where})"
                    )
                break
            chain.append(node)
    return problems


# ---- the graph --------------------------------------------------------------------------------


class OrganGraph:
    """An organ graph: organs (nodes) and typed relations (edges). NetworkX stays inside.

    Build with :meth:`load`, :meth:`from_dict` or :meth:`from_spec`; all validation problems are
    raised together as one :class:`GraphError`.
    """

    def __init__(self, spec: GraphSpec, source: str = "<graph>") -> None:
        import networkx as nx

        problems = _cross_problems(spec.model_dump(mode="python"), source)
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
                note=e.note,
            )
        g = nx.MultiDiGraph()
        for name in self._organs:
            g.add_node(name)
        for r in self._explicit:
            g.add_edge(r.a, r.b, key=len(g.edges), relation=r)
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
            problems += _pydantic_problems(e, source)
        problems += _cross_problems(data, source)
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
            data, dups = _load_yaml(p)
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


# ---- YAML writing ------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    pass


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flat = all(isinstance(x, (int, float, str, bool)) or x is None for x in data)
    nested = all(isinstance(x, list) and all(isinstance(y, (int, float)) for y in x) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=bool(data) and (flat or nested))


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    flow = "type" in data and all(not isinstance(v, dict) for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(tuple, _represent_list)
_Dumper.add_representer(dict, _represent_dict)


def dump_yaml(data: Any) -> str:
    """YAML text with number lists in flow style ([x, y, z]) and keys in model order."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)


# ---- learning from a bank ------------------------------------------------------------------------


@dataclass
class _Subject:
    subject_id: str
    label_map: np.ndarray  # (X, Y, Z) uint16, 0 background
    origin_mm: np.ndarray  # body-frame mm of voxel [0, 0, 0]
    spacing_mm: np.ndarray
    label_of: dict[str, int]
    records: dict[str, Any]
    crops: dict[str, tuple[tuple[slice, ...], np.ndarray]] = field(default_factory=dict)  # organ -> (slices, mask)


def _bank_subject_ids(bank: Any, organs: Sequence[str]) -> list[str]:
    ids = set()
    for o in organs:
        for r in bank.shapes(o):
            ids.add(str(r.subject_id))
    return sorted(ids)


def _rebuild_subjects(bank: Any, organs: Sequence[str]) -> list[_Subject]:
    """Place every shape's mask at its record's origin_mm on one grid per subject (bank spacing)."""
    sp = np.asarray(bank.spacing_mm, dtype=np.float64)
    by_subject: dict[str, dict[str, Any]] = {}
    for o in organs:
        for r in bank.shapes(o):
            by_subject.setdefault(str(r.subject_id), {}).setdefault(o, r)
    out = []
    for sid in sorted(by_subject):
        recs = by_subject[sid]
        lo = np.min([np.asarray(r.origin_mm, float) for r in recs.values()], axis=0)
        hi = np.max([np.asarray(r.origin_mm, float) + (np.asarray(r.shape_vox) - 1) * sp for r in recs.values()], axis=0)
        shape = tuple(int(round(v)) + 1 for v in (hi - lo) / sp)
        lm = np.zeros(shape, dtype=np.uint16)
        label_of = {}
        crops = {}
        # largest first so that, should two shapes overlap, the smaller keeps its voxels
        for k, o in enumerate(sorted(recs, key=lambda o: -float(recs[o].volume_ml)), start=1):
            r = recs[o]
            m = np.asarray(bank.mask(r.shape_id), dtype=bool)
            start = np.round((np.asarray(r.origin_mm, float) - lo) / sp).astype(int)
            sl = tuple(slice(int(s0), int(s0) + n) for s0, n in zip(start, m.shape))
            lm[sl][m] = k
            label_of[o] = k
            crops[o] = (sl, m)
        out.append(_Subject(sid, lm, lo, sp, label_of, recs, crops))
    return out


def _pair_overlap(subj: _Subject, a: str, b: str) -> tuple[float, float]:
    """(overlap fraction, inside fraction of a in b) of two shapes as placed in ``subj``."""
    (sa, ma), (sb, mb) = subj.crops[a], subj.crops[b]
    na, nb = int(np.count_nonzero(ma)), int(np.count_nonzero(mb))
    if na == 0 or nb == 0:
        return 0.0, 0.0
    inter = rel.offset_overlap_count(ma, tuple(x.start for x in sa), mb, tuple(y.start for y in sb))
    return inter / min(na, nb), inter / na


def _subject_gaps(subj: _Subject, max_gap_mm: float) -> dict[frozenset, float]:
    inv = {v: k for k, v in subj.label_of.items()}
    gaps = rel.contact_gaps(subj.label_map, subj.spacing_mm, max_gap_mm)
    return {frozenset(inv[v] for v in pair): g for pair, g in gaps.items()}


def _regularised_cov(samples: np.ndarray, prior_std_mm: float) -> np.ndarray:
    """Sample covariance shrunk toward diag(prior_std^2) with PRIOR_WEIGHT pseudo-subjects."""
    n = samples.shape[0]
    prior = np.eye(3) * prior_std_mm**2
    if n < 2:
        return prior
    s = np.cov(samples.T, ddof=1)
    return ((n - 1) * s + PRIOR_WEIGHT * prior) / (n - 1 + PRIOR_WEIGHT)


def _label_values(organs: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    used: set[int] = set()
    for o in organs:
        v = _BTCV.get(o, _EXTRA_LABELS.get(o))
        if v is not None:
            out[o] = v
            used.add(v)
    nxt = max(used | {14}) + 1
    for o in organs:
        if o not in out:
            while nxt in used:
                nxt += 1
            out[o] = nxt
            used.add(nxt)
    return out


def _round(x: Any, nd: int = 2) -> Any:
    a = np.asarray(x, dtype=np.float64)
    return np.round(a, nd).tolist()


def learn_graph(
    bank: Any,
    organs: Sequence[str] | None = None,
    *,
    name: str = "learned",
    contact_tolerance_mm: float | None = None,
    min_contact_share: float = 0.5,
    min_direction_margin_mm: float = 10.0,
    prior_std_mm: float = DEFAULT_PRIOR_STD_MM,
    offset_prior_std_mm: float = DEFAULT_OFFSET_PRIOR_STD_MM,
    anatomy_model: bool = True,
) -> OrganGraph:
    """Learn an organ graph from a shape bank.

    Each subject is rebuilt in the body frame by placing every shape's mask at its record's
    ``origin_mm`` (shape arrays are at bank spacing). Then:

    - anchor: mean of the organ's centroids over subjects (complete shapes in subjects whose
      body frame is exact, per the manifest's ``subjects[].frame_exact``, preferred; then
      complete shapes; then truncated ones in exact frames; then any), covariance regularised toward ``diag(prior_std_mm^2)`` (see
      :data:`DEFAULT_PRIOR_STD_MM`: with one subject the covariance IS the prior);
    - volume range: [0.7 * min, 1.3 * max] of complete shapes (truncated shapes only: [max, 2 * max]);
    - required when present in at least half the subjects, else optional with the share present;
    - contact: the pair touches (gap <= ``contact_tolerance_mm``, default two bank voxels) in at
      least ``min_contact_share`` of the subjects holding both;
    - parent (attached_to): the nearest (by centroid) larger organ it is in contact with;
      offset = child centroid - parent centroid, covariance regularised with ``offset_prior_std_mm``;
    - direction: for pairs in contact and for left/right mirror pairs, each axis along which the
      order holds in every subject (complete shapes) by at least ``min_direction_margin_mm``;
      margin = half the smallest observed separation, rounded down to 1 mm;
    - priority: smaller organs win where volumes meet (rank by typical volume);
    - label values: BTCV's, duodenum 14, others from 15;
    - ``anatomy_model`` (if asked): the joint model of centroids and log volumes of complete
      shapes (:func:`anatomix.anatomy_model.fit_anatomy_model_from_bank`).

    Args:
        bank: a ShapeBank (``organs``, ``spacing_mm``, ``shapes(organ)``, ``mask(shape_id)``,
            optional ``manifest.body_frame``).
        organs: organs to include (default: every organ of the bank).

    Raises:
        GraphError: an organ is unknown to the bank or the bank holds no shapes.
    """
    bank_organs = list(bank.organs)
    if organs is None:
        organs = bank_organs
    organs = list(dict.fromkeys(organs))
    missing = [o for o in organs if o not in bank_organs]
    if missing or not organs:
        probs = [
            f"bank: organs: expected organs the bank holds ({', '.join(bank_organs) or 'none'}); found {o!r}"
            for o in missing
        ] or ["bank: organs: expected at least one organ; found none"]
        raise GraphError(probs, "learn_graph")
    sp = np.asarray(bank.spacing_mm, dtype=np.float64)
    tol = float(2 * sp.max()) if contact_tolerance_mm is None else float(contact_tolerance_mm)
    subjects = _rebuild_subjects(bank, organs)
    n_subj = len(subjects)

    exact = bank.frame_exact

    def cents(o: str) -> tuple[np.ndarray, bool]:
        """Centroids for the anchor: complete shapes in exactly-framed subjects first."""
        have = [s for s in subjects if o in s.records]
        tiers = [
            [s for s in have if not s.records[o].truncated and exact.get(s.subject_id, True)],
            [s for s in have if not s.records[o].truncated],
            [s for s in have if exact.get(s.subject_id, True)],
            have,
        ]
        for k, tier in enumerate(tiers):
            if tier:
                return np.array([np.asarray(s.records[o].centroid_mm, float) for s in tier]), k == 0
        raise AssertionError("unreachable: every organ has a shape")

    entries: dict[str, dict] = {}
    typical: dict[str, float] = {}
    labels = _label_values(organs)
    organs = sorted(organs, key=lambda o: labels[o])
    for o in organs:
        c, complete = cents(o)
        vols_c = [float(s.records[o].volume_ml) for s in subjects if o in s.records and not s.records[o].truncated]
        vols_all = [float(s.records[o].volume_ml) for s in subjects if o in s.records]
        if vols_c:
            vr = (0.7 * min(vols_c), 1.3 * max(vols_c))
        else:
            vr = (max(vols_all), 2.0 * max(vols_all))
        typical[o] = math.sqrt(vr[0] * vr[1])
        present = sum(o in s.records for s in subjects) / max(n_subj, 1)
        notes = []
        if not complete:
            notes.append("no complete shape in an exactly-framed subject: anchor is rough")
        if not vols_c:
            notes.append("only truncated shapes: volume range is rough")
        entries[o] = {
            "label": labels[o],
            "anchor": {"mean_mm": _round(c.mean(axis=0), 1), "cov_mm": _round(_regularised_cov(c, prior_std_mm), 2)},
            "volume_ml": [round(vr[0], 2), round(vr[1], 2)],
            "required": present >= 0.5,
            "probability": 1.0 if present >= 0.5 else round(present, 3),
            "rotation_deg": [[-10.0, 10.0], [-10.0, 10.0], [-10.0, 10.0]],
            "scale": [0.9, 1.1],
            "priority": 0,
        }
        if notes:
            entries[o]["note"] = "; ".join(notes)
    for rank, o in enumerate(sorted(organs, key=lambda o: (-typical[o], o)), start=1):
        entries[o]["priority"] = rank

    # contacts
    touch: dict[frozenset, int] = {}
    both: dict[frozenset, int] = {}
    for s in subjects:
        gaps = _subject_gaps(s, tol)
        present = sorted(s.records)
        for i, a in enumerate(present):
            for b in present[i + 1:]:
                p = frozenset((a, b))
                both[p] = both.get(p, 0) + 1
                if p in gaps:
                    touch[p] = touch.get(p, 0) + 1
    contact_pairs = sorted(
        (tuple(sorted(p)) for p, k in touch.items() if k / both[p] >= min_contact_share), key=lambda t: t
    )
    relations: list[dict] = []
    for a, b in contact_pairs:
        relations.append({"type": "contact", "a": a, "b": b})

    # parents: nearest larger organ in contact
    mean_c = {o: np.asarray(entries[o]["anchor"]["mean_mm"]) for o in organs}
    contact_set = {frozenset(p) for p in contact_pairs}
    for o in sorted(organs, key=lambda o: (-typical[o], o)):
        cands = [
            q for q in organs
            if q != o and frozenset((o, q)) in contact_set and (typical[q], q) > (typical[o], o)
        ]
        if not cands:
            continue
        parent = min(cands, key=lambda q: (float(np.linalg.norm(mean_c[q] - mean_c[o])), q))
        offs = []
        for s in subjects:
            if o in s.records and parent in s.records:
                ro, rp = s.records[o], s.records[parent]
                offs.append((np.asarray(ro.centroid_mm, float) - np.asarray(rp.centroid_mm, float), ro.truncated or rp.truncated))
        good = [d for d, t in offs if not t] or [d for d, _ in offs]
        arr = np.array(good)
        relations.append({
            "type": "attached_to", "a": o, "b": parent,
            "offset": {"mean_mm": _round(arr.mean(axis=0), 1), "cov_mm": _round(_regularised_cov(arr, offset_prior_std_mm), 2)},
        })

    # directions: contact pairs and mirror pairs
    from anatomix.labels import mirror_organ

    cand_pairs = set(contact_set)
    for o in organs:
        m = mirror_organ(o)
        if m in organs:
            cand_pairs.add(frozenset((o, m)))
    axis_dirs = {0: ("right_of", "left_of"), 1: ("anterior_to", "posterior_to"), 2: ("above", "below")}
    for pair in sorted(tuple(sorted(p)) for p in cand_pairs):
        a, b = pair
        d_list = []
        for s in subjects:
            if a in s.records and b in s.records and not s.records[a].truncated and not s.records[b].truncated:
                d_list.append(np.asarray(s.records[a].centroid_mm, float) - np.asarray(s.records[b].centroid_mm, float))
        if not d_list:
            continue
        d = np.array(d_list)
        for ax in range(3):
            lo, hi = d[:, ax].min(), d[:, ax].max()
            if lo >= min_direction_margin_mm:
                sep, dname = lo, axis_dirs[ax][0]
            elif hi <= -min_direction_margin_mm:
                sep, dname = -hi, axis_dirs[ax][1]
            else:
                continue
            relations.append({"type": "direction", "a": a, "b": b, "direction": dname,
                              "margin_mm": float(math.floor(sep / 2))})

    body_frame = None
    manifest = getattr(bank, "manifest", None)
    if manifest is not None and getattr(manifest, "body_frame", None) is not None:
        bf = manifest.body_frame
        body_frame = bf if isinstance(bf, str) else str(getattr(bf, "definition", bf))
    data = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "description": f"learned from a bank of {n_subj} subject(s) at {sp.tolist()} mm by anatomix graph learn",
        "defaults": {"contact_tolerance_mm": round(max(3.0, tol), 2)},
        "organs": entries,
        "relations": relations,
    }
    if body_frame:
        data["body_frame"] = body_frame
    if anatomy_model:
        try:
            data["anatomy_model"] = fit_anatomy_model_from_bank(bank, organs).to_dict(ndigits=4)
        except ValueError:  # no complete shape of any organ: no joint model
            pass
    return OrganGraph.from_dict(data, f"learn_graph({name})")


# ---- checking against a bank ------------------------------------------------------------------


@dataclass
class GraphCheck:
    """Outcome of :func:`check_graph`: ``problems`` fail the check, ``warnings`` do not."""

    graph: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    measured: list[dict] = field(default_factory=list)  # one row per (relation, subject)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def check_graph(graph: OrganGraph, bank: Any | None = None) -> GraphCheck:
    """Check a (valid) graph against a bank's subjects.

    Without a bank, only the file's validity (already established) is summarised. With a bank:
    required organs without shapes are problems, optional ones warnings; each explicit relation
    (and each implicit avoid) is measured in every subject that holds both organs. A violated hard
    relation is a problem, a soft one a warning. Direction relations skip truncated shapes (their
    centroids are biased); contacts are judged on the share of subjects (majority), since a
    field-of-view excerpt can hide a contact.
    """
    rep = GraphCheck(graph=graph.source)
    n_rel = len(graph.relations(implicit=False))
    n_imp = len(graph.relations()) - n_rel
    if bank is None:
        rep.summary = f"{graph.name}: {len(graph)} organs, {n_rel} relations (+{n_imp} implicit avoid); valid"
        return rep
    bank_organs = set(bank.organs)
    have = [o for o in graph.organs if o in bank_organs]
    for o in graph.organs:
        if o not in bank_organs:
            msg = f"organ {o!r} has no shapes in the bank"
            (rep.problems if graph.organ(o).required else rep.warnings).append(msg)
    subjects = _rebuild_subjects(bank, have) if have else []
    max_tol = max([r.tolerance for r in graph.relations(implicit=False) if r.type == "contact"] + [0.0])
    gaps = [_subject_gaps(s, max_tol) for s in subjects]
    n_checked = n_viol = 0
    for r in graph.relations():
        if r.type == "attached_to" or r.a not in bank_organs or r.b not in bank_organs:
            continue
        results = []
        for s, g in zip(subjects, gaps):
            if r.a not in s.records or r.b not in s.records:
                continue
            ra, rb = s.records[r.a], s.records[r.b]
            if r.type == "direction":
                if ra.truncated or rb.truncated:
                    continue
                value = rel.direction_margin_mm(ra.centroid_mm, rb.centroid_mm, r.direction or "")
            elif r.type == "contact":
                value = g.get(frozenset((r.a, r.b)), float("inf"))
            elif r.type == "avoid":
                value = _pair_overlap(s, r.a, r.b)[0]
            else:  # inside
                value = _pair_overlap(s, r.a, r.b)[1]
            ok = r.holds(value)
            results.append((s.subject_id, value, ok))
            rep.measured.append({"relation": r.describe(), "type": r.type, "a": r.a, "b": r.b, "hard": r.hard,
                                 "implicit": r.implicit, "subject": s.subject_id, "value": value, "holds": ok})
        if not results:
            continue
        n_checked += 1
        bad = [(sid, v) for sid, v, ok in results if not ok]
        if not bad:
            continue
        if r.type == "contact" and len(bad) * 2 <= len(results):
            continue  # a contact holding in most subjects (an excerpt can hide one)
        n_viol += 1
        where = ", ".join(f"{sid} ({v:.3g})" for sid, v in bad[:4]) + (" ..." if len(bad) > 4 else "")
        msg = f"{'hard' if r.hard else 'soft'} {r.describe()} violated in {len(bad)}/{len(results)} subject(s): {where}"
        (rep.problems if r.hard else rep.warnings).append(msg)
    rep.summary = (
        f"{graph.name}: {len(graph)} organs ({len(have)} with bank shapes), {n_rel} relations "
        f"(+{n_imp} implicit avoid); {n_checked} measured on {len(subjects)} subject(s): "
        f"{len(rep.problems)} problem(s), {len(rep.warnings)} warning(s)"
    )
    return rep


# ---- drawing --------------------------------------------------------------------------------------

_EDGE_STYLE = {
    "attached_to": ("tab:blue", "-", 2.2),
    "contact": ("tab:green", "-", 2.5),
    "avoid": ("tab:red", ":", 1.2),
    "inside": ("tab:purple", "-", 1.8),
    "direction": ("0.55", "--", 0.8),
}


def draw_graph(graph: OrganGraph, out: str | Path, *, dpi: int = 120) -> Path:
    """Coronal picture of the graph: organs at anchors, 1-sigma anchor ellipses, coloured edges.

    Radiological convention: the subject's right (larger x) is on the image LEFT; z (superior)
    is up. Implicit avoid relations are not drawn (every unrelated pair has one).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Ellipse

    fig, ax = plt.subplots(figsize=(8, 9))
    cmap = plt.get_cmap("tab20")
    pos = {o: graph.organ(o).anchor_mean_mm for o in graph.organs}
    for r in graph.relations(implicit=False):
        col, ls, lw = _EDGE_STYLE[r.type]
        (xa, _, za), (xb, _, zb) = pos[r.a], pos[r.b]
        if r.type == "attached_to":
            ax.annotate("", xy=(xb, zb), xytext=(xa, za),
                        arrowprops=dict(arrowstyle="-|>", color=col, lw=lw, shrinkA=8, shrinkB=8), zorder=2)
        else:
            ax.plot([xa, xb], [za, zb], color=col, ls=ls, lw=lw, zorder=1, alpha=0.6)
    for i, o in enumerate(graph.organs):
        spec = graph.organ(o)
        c = spec.anchor_cov_mm[np.ix_([0, 2], [0, 2])]
        w, v = np.linalg.eigh(c)
        ang = math.degrees(math.atan2(v[1, 1], v[0, 1]))
        color = cmap(i % 20)
        ax.add_patch(Ellipse((spec.anchor_mean_mm[0], spec.anchor_mean_mm[2]), 2 * math.sqrt(w[1]),
                             2 * math.sqrt(w[0]), angle=ang, fc=(*color[:3], 0.18), ec=color, lw=1, zorder=0))
        size = 20 + 6 * spec.typical_volume_ml ** (2 / 3)
        ax.scatter([spec.anchor_mean_mm[0]], [spec.anchor_mean_mm[2]], s=min(size, 900), color=color,
                   edgecolor="k", lw=0.6, zorder=3)
        ax.annotate(f"{o} ({spec.label})", (spec.anchor_mean_mm[0], spec.anchor_mean_mm[2]), fontsize=8,
                    xytext=(5, 5), textcoords="offset points", zorder=4)
    ax.set_aspect("equal", adjustable="datalim")
    ax.autoscale_view()
    ax.invert_xaxis()  # subject's right on the image left
    ax.set_xlabel("x (mm)  <- subject's right  |  subject's left ->")
    ax.set_ylabel("z (mm), superior up")
    ax.set_title(f"{graph.name}: coronal view of anchors (1σ ellipses) and relations")
    handles = [Line2D([0], [0], color=c, ls=ls, lw=lw, label=t) for t, (c, ls, lw) in _EDGE_STYLE.items()]
    ax.legend(handles=handles, loc="lower right", fontsize=8, title="relation", title_fontsize=8)
    ax.grid(alpha=0.3)
    outp = Path(out)
    outp.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(outp, dpi=dpi)
    plt.close(fig)
    return outp
