"""Structure-aware synthesis (``mode: anatomy``, :class:`anatomix.config.AnatomySynthConfig`): ``AnatomyGenerator``.

A case is: a Scene sampled from an organ graph and a shape bank (:mod:`anatomix.placement`),
rendered on the output grid (:mod:`anatomix.render`), textured (:mod:`anatomix.appearance`).
Randomness is counter-based: stream 0 of ``sample_rng(seed, index)`` draws the scene, stream 1
the field of view, stream 2 the appearance, so case ``index`` of run ``seed`` is the same bytes
whatever the worker count, shard or order.

Typical use::

    config = load_synth_config("configs/synth.yaml")          # mode: anatomy
    config = config.model_copy(update={"graph": "graphs/abdomen.yaml"})
    generator = AnatomyGenerator(config, seed=0)
    sample = generator.sample(0)                               # image, label, record
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from anatomix import __version__
from anatomix.appearance import apply_lesions, render_hu, sample_appearance, sample_lesions
from anatomix.bank import ShapeBank
from anatomix.config import AnatomySynthConfig, GridConfig
from anatomix.context import (ContextConfig, apply_context_labels, context_label_names, load_context_subject,
                              render_context, sample_context)
from anatomix.device import resolve_device
from anatomix.errors import AnatomixError
from anatomix.graph import OrganGraph
from anatomix.hounsfield import hu_int16, image_from_hu, is_ct_like
from anatomix.placement import Scene, check_inputs, missing_organs, sample_scene
from anatomix.render import Grid, render_scene, scene_grid
from anatomix.record import RECORD_FORMAT, Pins, content_sha256
from anatomix.rng import sample_rng
from anatomix.sample import Sample

__all__ = ["AnatomyGenerator", "GraphBankWarning", "MissingOrganWarning", "choose_grid",
           "summarize_records"]


class GraphBankWarning(UserWarning):
    """The graph and the shape bank do not fit each other (issued once per run, before any case)."""


class MissingOrganWarning(GraphBankWarning):
    """Graph organs the shape bank has no shape of: left out of every scene (issued once per run)."""

STREAM_PLACEMENT, STREAM_FOV, STREAM_APPEARANCE, STREAM_LESIONS, STREAM_CONTEXT = 0, 1, 2, 3, 4


def choose_grid(scene: Scene, config: GridConfig, rng: np.random.Generator,
                cut_faces: Mapping[str, Sequence[str]] | None = None) -> Grid:
    """The output grid of a case: the whole scene, or a window with a foreground bias.

    ``cut_faces``: organ -> the faces ("z+", ...) at which its shape's source scan cut it; with
    ``config.whole_common_cut`` the whole grid ends at the innermost cut on each such side.
    """
    sp = np.asarray(config.spacing_mm, dtype=np.float64)
    if config.fov == "whole":
        grid = scene_grid(scene, sp, config.whole_margin_mm)
        if config.whole_common_cut and cut_faces:
            grid = _common_cut(grid, scene, cut_faces)
        return grid
    shape = np.asarray(config.shape)
    lo, hi = np.asarray(scene.box_min_mm), np.asarray(scene.box_max_mm)
    if scene.organs and rng.random() < config.foreground_bias:
        o = scene.organs[int(rng.integers(len(scene.organs)))]
        centre = np.asarray(o.centroid_mm) + rng.normal(0.0, config.window_jitter_mm, size=3)
    else:
        centre = rng.uniform(lo, hi)
    origin = centre - (shape - 1) / 2.0 * sp
    origin = np.round(origin / sp) * sp  # on the spacing lattice: cleaner headers
    return Grid(tuple(int(v) for v in shape), tuple(float(v) for v in sp), tuple(float(v) for v in origin))


def _common_cut(grid: Grid, scene: Scene, cut_faces: Mapping[str, Sequence[str]]) -> Grid:
    """``grid`` cut, on each side where some placed shape is cut, at the innermost such cut, but
    never inside a complete organ (a real scan of these organs would have held them whole).

    Shapes from different scans end at different heights; cutting them at one plane gives the
    tubes (aorta, IVC, esophagus) one common end, as in any one real scan.
    """
    sp = np.asarray(grid.spacing_mm)
    lo = np.asarray(grid.origin_mm, dtype=np.float64)
    hi = lo + (np.asarray(grid.shape) - 1) * sp
    whole = [o for o in scene.organs if not cut_faces.get(o.organ)]
    for axis, name in enumerate("xyz"):
        for sign in "+-":
            cut = [o for o in scene.organs if f"{name}{sign}" in cut_faces.get(o.organ, ())]
            if not cut:
                continue
            if sign == "+":
                plane = min(o.organ_max_mm[axis] for o in cut)
                plane = max([plane, *(o.organ_max_mm[axis] + sp[axis] for o in whole)])
                hi[axis] = min(hi[axis], plane)
            else:
                plane = max(o.organ_min_mm[axis] for o in cut)
                plane = min([plane, *(o.organ_min_mm[axis] - sp[axis] for o in whole)])
                lo[axis] = max(lo[axis], plane)
    lo = np.asarray(grid.origin_mm) + np.floor((lo - np.asarray(grid.origin_mm)) / sp) * sp  # on the grid's lattice
    shape = np.maximum(np.floor((hi - lo) / sp).astype(int) + 1, 1)
    return Grid(tuple(int(v) for v in shape), tuple(float(v) for v in sp), tuple(float(v) for v in lo))


def summarize_records(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Constraint summary over case records: hard constraints, contacts, dropped/failed organs."""
    n = len(records)
    hard_ok = 0
    c_ok = c_n = 0
    hard_viol: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    not_in_bank: Counter[str] = Counter()
    for r in records:
        c = r.get("constraints", {})
        hard_ok += bool(c.get("hard_ok"))
        c_ok += int(c.get("contacts_ok", 0))
        c_n += int(c.get("contacts_total", 0))
        for v in c.get("hard_violations", []):
            hard_viol[v] += 1
        dropped.update(c.get("dropped", []))
        failed.update(c.get("failed", []))
        not_in_bank.update(c.get("not_in_bank", []))
    return {
        "cases": n,
        "hard_constraints_satisfied": hard_ok / n if n else None,
        "contacts_satisfied": c_ok / c_n if c_n else None,
        "contacts_total": c_n,
        "hard_violations": dict(hard_viol.most_common()),
        "organs_dropped": dict(sorted(dropped.items())),
        "organs_failed": dict(sorted(failed.items())),
        "organs_not_in_bank": sorted(not_in_bank),
    }


def _constraints(scene: Scene) -> dict[str, Any]:
    contacts = [r for r in scene.report if r.kind == "contact"]
    return {
        "hard_ok": scene.hard_ok,
        "contacts_ok": sum(r.holds for r in contacts),
        "contacts_total": len(contacts),
        "hard_violations": [f"{r.kind} {r.a}-{r.b}" for r in scene.report if r.hard and not r.holds],
        "dropped": list(scene.dropped),
        "failed": list(scene.failed),
        "not_in_bank": list(scene.not_in_bank),
    }


class AnatomyGenerator:
    """Generator of structure-aware cases (the ``SampleGenerator`` protocol of :mod:`anatomix.synth`).

    Args:
        config: an :class:`AnatomySynthConfig` (``graph`` must be set unless ``graph`` is given).
        seed: run seed.
        device: torch device of organ SDF rendering ("cpu", "cuda", "cuda:N"; checked, never a
            silent fallback). Placement, lesion drawing and appearance run on the CPU whatever it is.
        graph, bank: already loaded objects (tests, notebooks); by default they are loaded from
            ``config.graph`` / ``config.bank`` (embedded bank when ``None``).

    Raises:
        AnatomixError: unreadable graph or bank, or a graph/bank pair that cannot make scenes
            (all problems at once), before any case is made.
    """

    def __init__(self, config: AnatomySynthConfig, seed: int = 0, device: str = "cpu",
                 graph: Any = None, bank: Any = None) -> None:
        if not isinstance(config, AnatomySynthConfig):
            raise AnatomixError(f"AnatomyGenerator needs an AnatomySynthConfig, got {type(config).__name__}")
        if seed < 0:
            raise AnatomixError(f"seed must be non-negative, got {seed}")
        self.config = config
        self.seed = int(seed)
        resolve_device(device)  # fails here, before any case, when the device is not usable
        self.device = device
        self._own_graph = graph is not None
        self._own_bank = bank is not None
        self._graph = graph
        self._bank = bank
        self._cache: dict[str, Any] = {}
        self._load()
        problems = check_inputs(self._graph, self._bank, strict=config.strict)
        if problems:
            body = "\n".join(f"  - {p}" for p in problems)
            raise AnatomixError(f"{len(problems)} problem(s) with the graph and bank; nothing was written:\n{body}")
        learned = self._graph.learned_from_bank
        if learned and learned != self._bank.manifest.content_hash:
            warnings.warn(f"the graph {self._graph.source} was learned from the shape bank {learned[:12]}, "
                          f"but {self.config.bank or 'the embedded bank'} is {self._bank.manifest.content_hash[:12]}: "
                          "its anchors, size ranges and relations fit the other bank's shapes; pass --bank "
                          "with the bank `graph learn` read (or re-learn the graph)", GraphBankWarning,
                          stacklevel=2)
        self.missing_organs = missing_organs(self._graph, self._bank)
        if self.missing_organs:
            # once, here, before any case is made (worker processes unpickle, they do not re-warn)
            warnings.warn(missing_organs_message(self.missing_organs, self.config.bank), MissingOrganWarning,
                          stacklevel=2)
        self._labels = {int(k): str(v) for k, v in self._graph.label_table().items()}
        self._pins = generator_pins(config, self._graph, self._bank)
        self._lesion_value: int | None = None
        if config.lesion_label == "own" and config.appearance.lesion_probability > 0 \
                and config.appearance.mode != "contour":
            value = config.lesion_label_value or (max(self._labels) + 1 if self._labels else 1)
            if value in self._labels:
                raise AnatomixError(f"lesion_label_value {value} is already the label of "
                                    f"{self._labels[value]!r}; choose a free value")
            if value > 255:
                raise AnatomixError("no free uint8 label value for lesions; set lesion_label: host")
            self._lesion_value = int(value)
        self._context_values: dict[str, int] = {}
        if config.context.enabled and config.context.labels == "all":
            start = max([*self._labels, self._lesion_value or 0]) + 1
            names = context_label_names(self._context_subject(), list(self._labels.values()))
            if start + len(names) - 1 > 255:
                raise AnatomixError(f"context labels: all needs {len(names)} label values after {start - 1}; "
                                    "uint8 labels stop at 255: use labels: background or ignore")
            self._context_values = {n: start + k for k, n in enumerate(names)}

    def _cut_faces(self, scene: Scene) -> dict[str, tuple[str, ...]]:
        """organ -> the faces at which the source scans of its shape (and blend shape) cut it."""
        out = {}
        for o in scene.organs:
            ids = [o.shape_id] + ([o.blend_shape_id] if o.blend_shape_id and o.blend_weight > 0 else [])
            out[o.organ] = tuple(sorted({f for i in ids for f in self._bank.record(i).truncated_faces}))
        return out

    def _context_subject(self) -> Any:
        return load_context_subject(self.config.context.bank)

    # -- loading (also in worker processes after unpickling) ---------------------------------
    def _load(self) -> None:
        if self._graph is None:
            if not self.config.graph:
                raise AnatomixError("no organ graph: pass --graph FILE (e.g. graphs/abdomen.yaml) "
                                    "or set `graph:` in the config")
            path = Path(self.config.graph)
            if not path.is_file():
                raise AnatomixError(f"graph {path}: no such file")
            self._graph = OrganGraph.load(path)
        if self._bank is None:
            if self.config.bank:
                path = Path(self.config.bank)
                if not path.is_dir():
                    raise AnatomixError(f"bank {path}: no such folder (a bank made by `anatomix ingest-masks`)")
                self._bank = ShapeBank.load(path)
            else:
                self._bank = ShapeBank.default()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = {}
        if not self._own_graph:
            state["_graph"] = None
        if not self._own_bank:
            state["_bank"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load()

    # -- protocol --------------------------------------------------------------------------------
    @property
    def graph(self) -> Any:
        return self._graph

    @property
    def bank(self) -> Any:
        return self._bank

    def label_names(self) -> dict[int, str]:
        names = dict(self._labels)
        if self._lesion_value is not None:
            names[self._lesion_value] = "lesion"
        names.update({v: n for n, v in self._context_values.items()})
        return names

    def warm_up(self) -> None:
        """Fill the caches that a long run fills as it goes, before the first case: every bank
        shape's SDF crop and the blend levels of every pair of shapes placement may blend (a graph
        organ, two subjects; tens of ms a pair, so the cost grows with the square of the subjects
        per organ). Outputs do not change; call it where the first cases should cost what later
        ones do (a timing bench). The caches are not pickled: call it in the process that samples."""
        from anatomix.shape_field import organ_field

        blends = self.config.placement.interpolation_probability > 0
        graph_organs = set(self._graph.organs)
        for organ in (o for o in self._bank.organs if o in graph_organs):
            recs = list(self._bank.shapes(organ))
            for a in recs:
                organ_field(self._bank, str(a.shape_id), None, 0.0, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                            (0.0, 0.0, 0.0), cache=self._cache)
                for b in recs if blends else ():
                    if b.subject_id != a.subject_id:  # the pairs choose_shapes can draw
                        organ_field(self._bank, str(a.shape_id), str(b.shape_id), 0.5, (1.0, 1.0, 1.0),
                                    (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), cache=self._cache)

    def scene(self, index: int) -> Scene:
        """The Scene of case ``index`` (placement only)."""
        return sample_scene(self._graph, self._bank, sample_rng(self.seed, index, STREAM_PLACEMENT),
                            self.config.placement, cache=self._cache)

    @property
    def pins(self) -> Pins:
        """Version and content hashes of the config, graph and bank this generator uses."""
        return self._pins

    def sample_record(self, index: int) -> dict[str, Any]:
        """Draw everything of case ``index`` (no rendering): scene, field of view, appearance and
        lesions, each from its own counter-based stream (``sample_rng(seed, index, stream)``).

        The appearance is drawn for every organ of the scene whatever the window, and lesions from
        the scene and the bank alone, so changing one drawn part (textures off, another lesion
        probability, another window) leaves the others as they were.
        """
        cfg = self.config
        scene = self.scene(index)
        grid = choose_grid(scene, cfg.grid, sample_rng(self.seed, index, STREAM_FOV), self._cut_faces(scene))
        organs = [o.organ for o in scene.organs]
        labels = {o.organ: o.label for o in scene.organs}
        context: dict[str, Any] | None = None
        if cfg.context.enabled:  # hook: context anatomy (anatomix.context); target organs win
            subject = self._context_subject()
            exclude = sorted(set(self._labels.values()))
            context = {"params": sample_context(scene, subject, sample_rng(self.seed, index, STREAM_CONTEXT),
                                                cfg.context),
                       "bank": cfg.context.bank, "exclude": exclude, "config": cfg.context.model_dump(mode="json"),
                       "values": dict(self._context_values), "names": context_label_names(subject, exclude)}
        params = sample_appearance(organs, labels, grid, (scene.box_min_mm, scene.box_max_mm),
                                   sample_rng(self.seed, index, STREAM_APPEARANCE), cfg.appearance,
                                   context=sorted(context["names"]) if context else ())
        lesions = sample_lesions(scene, self._bank, sample_rng(self.seed, index, STREAM_LESIONS), cfg.appearance,
                                 self._lesion_value, cache=self._cache)
        return {
            "format_version": RECORD_FORMAT, "seed": self.seed, "index": int(index), "mode": "anatomy",
            "pins": self._pins.model_dump(mode="json"),
            "config": cfg.model_dump(mode="json"),
            "grid": {"shape": list(grid.shape), "spacing_mm": list(grid.spacing_mm),
                     "origin_mm": list(grid.origin_mm), "fov": cfg.grid.fov},
            "constraints": _constraints(scene),
            "scene": scene.model_dump(mode="json"),
            "appearance": params,
            "lesions": lesions,
            "context": context,
        }

    def render_record(self, record: dict[str, Any]) -> Sample:
        """Render a record of :meth:`sample_record` (or a ``records/<case>.json``): pure."""
        return render_anatomy_record(record, self._bank, cache=self._cache, device=self.device)

    def sample(self, index: int) -> Sample:
        """Case ``index``: ``render_record(sample_record(index))``."""
        return self.render_record(self.sample_record(index))

    def summary(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return summarize_records(records)


def render_anatomy_record(record: dict[str, Any], bank: ShapeBank, cache: dict[str, Any] | None = None,
                          device: Any = None) -> Sample:
    """Apply a drawn anatomy record: scene -> label map and SDFs, lesions painted, image rendered.

    Deterministic, and needs nothing but the record and the shape bank it was drawn from (not
    the graph or the config file). The returned record is ``record`` plus what rendering measured
    (``lesion_voxels``).
    """
    scene = Scene.model_validate(record["scene"])
    g = record["grid"]
    grid = Grid(tuple(g["shape"]), tuple(g["spacing_mm"]), tuple(g["origin_mm"]))
    rendered = render_scene(scene, bank, grid, cache=cache, device=device)
    label = rendered.label.copy()
    painted = apply_lesions(rendered, label, record["lesions"])
    ctx = record.get("context")
    context = None
    if ctx:
        context = render_context(ctx["params"], grid, load_context_subject(ctx["bank"]), exclude=ctx["exclude"],
                                 organs=rendered.label > 0)
    params = record["appearance"]
    hu = render_hu(rendered, label, params, painted, context=context)
    image = image_from_hu(hu, params)
    # others are written as [0, 1]; a CT-like image is not inverted, so it is the windowed HU
    image_hu = hu_int16(hu, params, windowed=image) if is_ct_like(params) else None
    if ctx and context is not None:
        apply_context_labels(label, context, ContextConfig.model_validate(ctx["config"]), ctx["values"])
    out = dict(record)
    out["lesion_voxels"] = [int(m.sum()) for _, m, _ in painted]
    return Sample(image=image, label=label, spacing_mm=grid.spacing_mm, record=out, origin_mm=grid.origin_mm,
                  image_hu=image_hu)


def generator_pins(config: AnatomySynthConfig, graph: OrganGraph, bank: ShapeBank) -> Pins:
    """The pins of an anatomy run: paths of the graph and bank are left out of the config hash
    (their contents are pinned by their own hashes, so moving a file changes nothing)."""
    dumped = config.model_dump(mode="json")
    dumped.pop("graph", None)
    dumped.pop("bank", None)
    return Pins(anatomix_version=__version__, config_sha256=content_sha256(dumped),
                graph_sha256=content_sha256(graph.to_dict()),
                bank_sha256=bank.manifest.content_hash)  # verified when the bank was loaded


def missing_organs_message(organs: Sequence[str], bank: str | None) -> str:
    """The one warning about graph organs without bank shapes: which, which bank, what to do."""
    where = f"the shape bank {bank}" if bank else "the embedded shape bank"
    names = ", ".join(organs)
    return (f"{where} has no shape of {len(organs)} graph organ(s): {names}. They are left out of every "
            f"case, with their relations. To include them, add their shapes to the bank (`anatomix "
            f"ingest-masks` on label maps that contain them); to silence this, remove them from the graph "
            f"(or pass --strict to make this an error).")


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable constraint summary (printed at the end of a run)."""
    if not summary or not summary.get("cases"):
        return "constraint summary: no case"

    def pct(v: Any) -> str:
        return "n/a" if v is None else f"{100.0 * v:.1f} %"

    lines = [f"constraint summary over {summary['cases']} case(s):",
             f"  all hard constraints satisfied: {pct(summary['hard_constraints_satisfied'])}",
             f"  contacts satisfied: {pct(summary['contacts_satisfied'])} of {summary['contacts_total']}"]
    if summary.get("organs_dropped"):
        dropped = summary["organs_dropped"]
        lines.append("  optional organs dropped: " + ", ".join(f"{k} {v}" for k, v in dropped.items()))
    if summary.get("organs_not_in_bank"):
        lines.append("  graph organs left out (no shape in the bank): " + ", ".join(summary["organs_not_in_bank"]))
    if summary.get("organs_failed"):
        lines.append("  required organs that could not be placed: "
                     + ", ".join(f"{k} {v}" for k, v in summary["organs_failed"].items()))
    if summary.get("hard_violations"):
        lines.append("  hard violations: " + ", ".join(f"{k} {v}" for k, v in summary["hard_violations"].items()))
    return "\n".join(lines)
