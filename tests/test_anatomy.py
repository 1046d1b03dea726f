"""AnatomyGenerator through the dataset writer: determinism, shards, resume, bad input, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from anatomix.anatomy import AnatomyGenerator, summarize_records
from anatomix.config import AnatomySynthConfig, anatomy_config
from anatomix.errors import AnatomixError, ConfigError
from anatomix.synth import write_dataset

SMALL = {"grid": {"shape": [32, 32, 32], "spacing_mm": [4.0, 4.0, 4.0]},
         "appearance": {"distractors": [0, 2], "lesion_probability": 0.5}}


def _gen(graph, bank, seed=0, **extra):
    cfg = AnatomySynthConfig.model_validate({**SMALL, **extra})
    return AnatomyGenerator(cfg, seed=seed, graph=graph, bank=bank)


def _digest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for sub in ("imagesTr", "labelsTr", "records") for p in sorted((out / sub).glob("*"))}


def test_sample_contents(anatomy_graph, anatomy_bank):
    g = _gen(anatomy_graph, anatomy_bank)
    s = g.sample(0)
    assert s.image.shape == (32, 32, 32) and s.label.dtype == np.uint8
    rec = json.loads(json.dumps(s.record))
    assert rec["seed"] == 0 and rec["index"] == 0 and rec["mode"] == "anatomy"
    assert rec["scene"]["organs"] and rec["scene"]["report"]
    assert set(np.unique(s.label)) <= set(g.label_names()) | {0}
    assert g.label_names()[6] == "lesion"  # own class: largest organ label + 1


def test_determinism_across_workers_and_shards(tmp_path, anatomy_graph, anatomy_bank):
    g = _gen(anatomy_graph, anatomy_bank, seed=3)
    write_dataset(g, tmp_path / "one", n=4, workers=1, progress=False)
    write_dataset(g, tmp_path / "two", n=4, workers=2, progress=False)
    for k in range(2):
        write_dataset(g, tmp_path / "shards", n=4, shard=f"{k}/2", progress=False)
    ref = _digest(tmp_path / "one")
    assert len(ref) == 12
    assert _digest(tmp_path / "two") == ref
    assert _digest(tmp_path / "shards") == ref


def test_resume_after_killed_run(tmp_path, anatomy_graph, anatomy_bank):
    g = _gen(anatomy_graph, anatomy_bank, seed=1)
    out = tmp_path / "run"
    write_dataset(g, out, n=3, progress=False)
    ref = _digest(out)
    # a run killed while writing case 2: its record is missing, a temp file lies around
    (out / "records" / "anatomix_000002.json").unlink()
    (out / "imagesTr" / ".anatomix_000002_0000.nii.gz.999.tmp.nii.gz").write_bytes(b"half")
    res = write_dataset(g, out, n=3, progress=False)
    assert res["written"] == 1 and res["skipped"] == 2
    assert _digest(out) == ref
    summary = res["generator_summary"]
    assert summary["cases"] == 3 and summary["hard_constraints_satisfied"] == 1.0


def test_bad_inputs_fail_before_writing(tmp_path, anatomy_graph, anatomy_bank):
    with pytest.raises(ConfigError):
        anatomy_config(None, graph="g.yaml", fov="everything")
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: anatomy\ngrid: {shape: [96, 96], spacin_mm: [1, 1, 1]}\n")
    with pytest.raises(ConfigError) as exc:
        anatomy_config(bad, graph="g.yaml")
    assert "grid.shape" in str(exc.value) and "grid.spacin_mm" in str(exc.value)
    with pytest.raises(AnatomixError, match="no such file"):
        AnatomyGenerator(anatomy_config(None, graph=str(tmp_path / "missing.yaml")))
    cfg = anatomy_config(None, graph="g.yaml", bank=str(tmp_path / "nobank"))
    with pytest.raises(AnatomixError, match="no such folder"):
        AnatomyGenerator(cfg, graph=anatomy_graph)

    class EmptyBank:
        organs: list = []

        def shapes(self, organ):
            return []

    with pytest.raises(AnatomixError, match="bank has no shape of any"):
        AnatomyGenerator(AnatomySynthConfig(), graph=anatomy_graph, bank=EmptyBank())
    assert not any(tmp_path.rglob("*.nii.gz"))


def test_organ_missing_from_bank_warns_once_and_is_summarised(tmp_path, anatomy_graph, anatomy_bank):
    from anatomix.anatomy import MissingOrganWarning

    class NoSpleen:
        organs = [o for o in anatomy_bank.organs if o != "spleen"]
        spacing_mm = anatomy_bank.spacing_mm

        def shapes(self, organ):
            return [] if organ == "spleen" else anatomy_bank.shapes(organ)

        def __getattr__(self, name):
            return getattr(anatomy_bank, name)

    with pytest.warns(MissingOrganWarning) as caught:
        g = _gen(anatomy_graph, NoSpleen())
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "spleen" in msg and "embedded shape bank" in msg and "add their shapes" in msg and "remove" in msg
    res = write_dataset(g, tmp_path / "run", n=2, workers=1, progress=False)
    summary = res["generator_summary"]
    assert summary["organs_not_in_bank"] == ["spleen"] and "spleen" not in summary["organs_dropped"]
    assert summary["hard_constraints_satisfied"] == 1.0
    from anatomix.anatomy import format_summary

    assert "left out (no shape in the bank): spleen" in format_summary(summary)
    with pytest.raises(AnatomixError, match="'spleen'"):
        _gen(anatomy_graph, NoSpleen(), strict=True)


def test_summary_counts():
    recs = [{"constraints": {"hard_ok": True, "contacts_ok": 2, "contacts_total": 2, "dropped": ["spleen"],
                             "failed": [], "hard_violations": []}},
            {"constraints": {"hard_ok": False, "contacts_ok": 1, "contacts_total": 2, "dropped": [],
                             "failed": ["liver"], "hard_violations": ["avoid a-b"]}}]
    s = summarize_records(recs)
    assert s["hard_constraints_satisfied"] == 0.5 and s["contacts_satisfied"] == 0.75
    assert s["organs_dropped"] == {"spleen": 1} and s["organs_failed"] == {"liver": 1}


def test_cli_synth_graph_and_preview(tmp_path, repo_root):
    graph = repo_root / "graphs" / "abdomen.yaml"
    if not graph.exists():
        pytest.skip("graphs/abdomen.yaml not present")
    from typer.testing import CliRunner

    from anatomix.cli import app

    cfg = tmp_path / "small.yaml"
    cfg.write_text("mode: anatomy\ngrid: {shape: [32, 32, 32], spacing_mm: [4.0, 4.0, 4.0]}\n")
    runner = CliRunner()
    out = tmp_path / "synth"
    res = runner.invoke(app, ["synth", "--graph", str(graph), "--config", str(cfg), "-n", "2",
                              "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "hard constraints" in res.output
    ds = json.loads((out / "dataset.json").read_text())
    # consecutive labels: the embedded bank has no esophagus (graph label 5), so the liver (6) is 5
    assert ds["numTraining"] == 2 and ds["labels"]["liver"] == 5 and ds["anatomix_source_values"]["liver"] == 6
    res = runner.invoke(app, ["preview", str(out), "--out", str(tmp_path / "p.png"), "--mesh", str(tmp_path / "m.glb")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "p.png").stat().st_size > 1000 and (tmp_path / "m.glb").exists()
    # bad graph: clean error, exit 1, nothing written
    bad = tmp_path / "bad_graph.yaml"
    bad.write_text("organs: {liver: {label: 300}}\n")
    res = runner.invoke(app, ["synth", "--graph", str(bad), "-n", "1", "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and not (tmp_path / "x").exists()
    res = runner.invoke(app, ["preview", str(tmp_path / "nothing"), "--out", str(tmp_path / "q.png")])
    assert res.exit_code == 1


def _placed(organ: str, lo: tuple[float, float, float], hi: tuple[float, float, float]):
    from anatomix.scene import PlacedOrgan
    c = tuple((a + b) / 2 for a, b in zip(lo, hi))
    return PlacedOrgan(organ=organ, label=1, shape_id=f"{organ}-s", scale=(1, 1, 1), rotation_deg=(0, 0, 0),
                       translation_mm=c, centroid_mm=c, volume_ml=1.0, organ_min_mm=lo, organ_max_mm=hi)


def test_whole_field_of_view_cuts_the_tubes_at_one_plane():
    """Bank shapes come from scans cut at different heights: an aorta cut 40 mm above an esophagus
    gave pairs no real scan shows. The whole grid now ends at the lowest top cut, but never inside
    a complete organ (the liver); sides without a cut keep the margin."""
    from anatomix.anatomy import choose_grid
    from anatomix.config import GridConfig
    from anatomix.scene import Scene
    organs = (_placed("aorta", (-10, 0, -100), (10, 20, 150)), _placed("esophagus", (-20, 10, 60), (-5, 25, 110)),
              _placed("liver", (0, -40, -20), (120, 80, 100)), _placed("kidney_left", (-90, -10, -80), (-40, 30, 20)))
    scene = Scene(placement="t", body_scale=1.0, score_spacing_mm=4.0, organs=organs,
                  box_min_mm=(-90, -40, -100), box_max_mm=(120, 80, 150))
    config = GridConfig(fov="whole", spacing_mm=(2.0, 2.0, 2.0), whole_margin_mm=20.0)
    cuts = {"aorta": ("z+", "z-"), "esophagus": ("z+",)}
    rng = np.random.default_rng(0)
    plain = choose_grid(scene, config, rng)
    cut = choose_grid(scene, config, rng, cuts)

    def z_range(g):
        return g.origin_mm[2], g.origin_mm[2] + (g.shape[2] - 1) * g.spacing_mm[2]

    assert z_range(plain) == (-120.0, 170.0)
    lo, hi = z_range(cut)
    assert 110.0 <= hi < 112.0  # the esophagus' cut, not the aorta's 150 (the liver ends at 100)
    assert -102.0 < lo <= -100.0  # the aorta's lower cut, no margin below it
    assert cut.shape[:2] == plain.shape[:2] and cut.origin_mm[:2] == plain.origin_mm[:2]
    assert choose_grid(scene, config.model_copy(update={"whole_common_cut": False}), rng, cuts) == plain
    # complete organs beyond the cuts: the grid ends one voxel past them (liver top, kidney bottom)
    beyond = (*organs[:2], _placed("liver", (0, -40, -20), (120, 80, 130)),
              _placed("kidney_left", (-90, -10, -110), (-40, 30, 20)))
    lo, hi = z_range(choose_grid(scene.model_copy(update={"organs": beyond}), config, rng, cuts))
    assert 132.0 <= hi < 134.0 and -114.0 < lo <= -112.0


def test_warm_up_fills_the_blend_levels_and_changes_no_byte(anatomy_graph, anatomy_bank, monkeypatch):
    import anatomix.shape_field as shape_field

    cold = _gen(anatomy_graph, anatomy_bank)
    want = [cold.sample(i) for i in range(3)]
    warm = _gen(anatomy_graph, anatomy_bank)
    warm.warm_up()
    assert any(k.startswith("blend_levels:") for k in warm._cache if isinstance(k, str))

    def computed(*args, **kwargs):
        raise AssertionError("blend levels computed after warm_up")

    monkeypatch.setattr(shape_field, "blend_levels", computed)
    for i, s in enumerate(want):
        got = warm.sample(i)
        assert got.label.tobytes() == s.label.tobytes() and got.image.tobytes() == s.image.tobytes()
