"""Placement with the graph's joint anatomy model and with organ complexes (toy bank and graph)."""

from __future__ import annotations

import numpy as np
import pytest

from anatomix.anatomy_model import AnatomyModel
from anatomix.config import PlacementConfig
from anatomix.graph import GraphError, OrganGraph, learn_graph
from anatomix.placement import sample_scene

from conftest import anatomy_graph_dict  # noqa: I001  (the shared toy graph of tests/conftest.py)


def _coupled_model(dx_mm: float) -> dict:
    """Liver and right kidney: the kidney sits at liver + (dx, -45, -75) mm; x strongly coupled
    (correlation 0.98), other axes and the spleen independent."""
    organs = ["liver", "kidney_right"]
    feats = [f"{o}.{a}" for o in organs for a in "xyz"]
    mean = [50.0, 45.0, 75.0, 50.0 + dx_mm, 0.0, 0.0]
    cov = np.diag([400.0, 36.0, 36.0, 400.0, 36.0, 36.0])
    cov[0, 3] = cov[3, 0] = 0.98 * 400.0
    return {"organs": organs, "features": feats, "mean": mean, "cov": cov.tolist(), "n_subjects": 50,
            "shrinkage": 0.0}


def _graph_with(model: dict | None) -> OrganGraph:
    d = anatomy_graph_dict()
    if model is not None:
        d["anatomy_model"] = model
    return OrganGraph.from_dict(d, source="toy+model")


def test_graph_file_validates_the_anatomy_model() -> None:
    g = _graph_with(_coupled_model(15.0))
    assert isinstance(g.anatomy_model, AnatomyModel)
    assert OrganGraph.from_dict(g.to_dict(), "round trip").anatomy_model.to_dict() == g.anatomy_model.to_dict()
    bad = _coupled_model(15.0)
    bad["organs"] = ["liver", "pancreas"]
    with pytest.raises(GraphError, match="anatomy_model.organs: expected organs of the graph"):
        _graph_with(bad)
    bad = _coupled_model(15.0)
    bad["cov"][0][0] = -5.0
    with pytest.raises(GraphError, match="positive definite"):
        _graph_with(bad)


def test_learn_graph_embeds_a_model_of_the_banks_complete_shapes(anatomy_bank) -> None:
    g = learn_graph(anatomy_bank)
    m = g.anatomy_model
    assert m is not None and set(m.organs) == set(anatomy_bank.organs)
    assert np.linalg.eigvalsh(m.cov).min() > 0
    liver = [r for r in anatomy_bank.shapes("liver") if not r.truncated]
    np.testing.assert_allclose(m.centroid_mean_cov("liver")[0], np.mean([r.centroid_mm for r in liver], axis=0),
                               atol=1e-3)
    assert learn_graph(anatomy_bank, anatomy_model=False).anatomy_model is None


@pytest.mark.slow
def test_conditioning_moves_the_kidney_with_the_placed_liver(anatomy_bank) -> None:
    """With the coupled model, the placed right kidney's x follows the placed liver's x (the model's
    slope ~0.98); without the model it does not."""
    cfg = PlacementConfig(candidates=8, shape_attempts=3)

    def pairs(graph: OrganGraph, n: int = 10) -> np.ndarray:
        out = []
        for i in range(n):
            s = sample_scene(graph, anatomy_bank, np.random.default_rng([11, i]), cfg)
            c = {o.organ: np.asarray(o.centroid_mm) for o in s.organs}
            if "liver" in c and "kidney_right" in c:
                out.append((c["liver"][0] / s.body_scale, c["kidney_right"][0] / s.body_scale))
        return np.array(out)

    with_model = pairs(_graph_with(_coupled_model(15.0)))
    dx = with_model[:, 1] - with_model[:, 0]
    # the kidney sits at liver + 15 mm in x (std of the conditional ~ sqrt(400 (1 - 0.98^2)) + floor ~ 6 mm,
    # plus a 4 mm lattice)
    assert np.median(dx) == pytest.approx(15.0, abs=6.0)
    # the kidney's x tracks the placed liver's x (the coupling), not only its own anchor
    assert np.corrcoef(with_model[:, 0], with_model[:, 1])[0, 1] > 0.7
    # moving the model's kidney 30 mm toward the midline moves the placed kidney that way; the
    # graph's other relations (liver contact, gallbladder avoid) resist part of it
    shifted = pairs(_graph_with(_coupled_model(-15.0)))
    assert np.median(shifted[:, 1] - shifted[:, 0]) < np.median(dx) - 5.0


@pytest.mark.slow
def test_complexes_keep_members_near_the_root_with_the_subjects_geometry(anatomy_bank) -> None:
    """hepatic complex on the toy bank: the gallbladder follows the placed liver by one complete
    subject's offset, within the configured spread (+ floor and lattice)."""
    graph = OrganGraph.from_dict(anatomy_graph_dict(), source="toy")
    cfg = PlacementConfig(candidates=8, shape_attempts=3, complexes=True)
    offs = {r.subject_id: np.subtract(next(g.centroid_mm for g in anatomy_bank.shapes("gallbladder")
                                           if g.subject_id == r.subject_id), r.centroid_mm)
            for r in anatomy_bank.shapes("liver") if not r.truncated}
    for i in range(6):
        s = sample_scene(graph, anatomy_bank, np.random.default_rng([12, i]), cfg)
        c = {o.organ: np.asarray(o.centroid_mm) for o in s.organs}
        rel = (c["gallbladder"] - c["liver"]) / s.body_scale
        assert min(np.linalg.norm(rel - o) for o in offs.values()) < 20.0
