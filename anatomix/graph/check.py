"""Checking a graph against a shape bank: does every bank subject satisfy the graph's relations?"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


from anatomix import relations as rel
from anatomix.graph.model import OrganGraph
from anatomix.graph.subjects import pair_overlap, rebuild_subjects, subject_gaps


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
    subjects = rebuild_subjects(bank, have) if have else []
    max_tol = max([r.tolerance for r in graph.relations(implicit=False) if r.type == "contact"] + [0.0])
    gaps = [subject_gaps(s, max_tol) for s in subjects]
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
                value = pair_overlap(s, r.a, r.b)[0]
            else:  # inside
                value = pair_overlap(s, r.a, r.b)[1]
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
