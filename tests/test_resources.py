"""Named resources, config-relative paths, the CLI's --version/resources, the notebook API,
and the nnU-Net conventions of dataset.json (channel name, consecutive producible labels)."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from anatomix import resources
from anatomix.cli import app
from anatomix.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_names_resolve_to_the_checkout_files() -> None:
    assert resources.resolve("graph", "abdomen") == (ROOT / "graphs/abdomen.yaml").resolve()
    assert resources.resolve("graph", "abdomen.yaml") == (ROOT / "graphs/abdomen.yaml").resolve()
    assert resources.resolve("bank", "default") == (ROOT / "shapebank/default").resolve()
    assert resources.resolve("config", "tiny") == (ROOT / "configs/tiny.yaml").resolve()
    assert set(resources.names("config")) >= {"fdif", "synth", "tiny", "tiny_finetune", "pretrain", "finetune"}


def test_an_existing_path_wins_over_a_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "abdomen").write_text("organs: {}\n")
    assert resources.resolve("graph", "abdomen") == (tmp_path / "abdomen").resolve()
    (tmp_path / "default").mkdir()  # a folder without manifest.json is not a bank
    assert resources.resolve("bank", "default") == (ROOT / "shapebank/default").resolve()


def test_unknown_name_lists_what_ships() -> None:
    with pytest.raises(ConfigError) as e:
        resources.resolve("graph", "thorax")
    assert "'thorax'" in str(e.value) and "abdomen" in str(e.value) and "anatomix resources" in str(e.value)


def test_lightning_config_inputs_resolve_relative_to_the_config(tmp_path: Path) -> None:
    cfg = resources.resolve_lightning_config(resources.resolve("config", "tiny"))
    args = cfg["data"]["init_args"]
    assert Path(args["synth_config"]) == (ROOT / "configs/synth.yaml").resolve()
    assert Path(args["overrides"]["graph"]) == (ROOT / "graphs/abdomen.yaml").resolve()
    assert cfg["trainer"]["default_root_dir"] == "runs/tiny"  # outputs stay under the working folder
    ft = resources.resolve_lightning_config(resources.resolve("config", "tiny_finetune"))
    assert Path(ft["data"]["init_args"]["datalist"]).is_file()
    assert ft["model"]["pretrained"] == "runs/tiny/checkpoints/last.ckpt"
    # a copied config whose relative input is missing fails naming the field
    (tmp_path / "c.yaml").write_text("data:\n  init_args:\n    datalist: nowhere.json\n")
    with pytest.raises(ConfigError, match="datalist.*nowhere.json"):
        resources.resolve_lightning_config(tmp_path / "c.yaml")


def test_lightning_argv_replaces_only_the_config_value() -> None:
    argv = resources.lightning_argv(["fit", "--config", "tiny", "--trainer.max_steps", "5"])
    assert argv[0] == "fit" and argv[1] == "--config" and argv[3:] == ["--trainer.max_steps", "5"]
    import yaml

    assert yaml.safe_load(argv[2])["model"]["network"] == "unetr"


def test_synth_config_paths_relative_to_the_synth_config(tmp_path: Path) -> None:
    from anatomix.api import synth_config

    sub = tmp_path / "cfg"
    sub.mkdir()
    (tmp_path / "g.yaml").write_text((ROOT / "graphs/abdomen.yaml").read_text())
    (sub / "s.yaml").write_text("mode: anatomy\ngraph: ../g.yaml\nbank: default\n")
    cfg = synth_config(config=sub / "s.yaml")
    assert Path(cfg.graph) == (tmp_path / "g.yaml").resolve()
    assert Path(cfg.bank) == (ROOT / "shapebank/default").resolve()


def test_cli_version_and_resources() -> None:
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == "anatomix 0.1.0"
    r = CliRunner().invoke(app, ["resources"])
    assert r.exit_code == 0
    for text in ("--graph abdomen", "--bank default", "--config fdif", "--config tiny"):
        assert text in r.output


def test_cli_completion_is_available() -> None:
    r = CliRunner().invoke(app, ["--help"])
    assert "--install-completion" in r.output


def test_cli_unknown_graph_name_fails_cleanly(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["synth", "--graph", "thorax", "-n", "1", "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "abdomen" in r.output and not (tmp_path / "o").exists()


def test_api_doctests_run() -> None:
    import anatomix.api
    import anatomix.resources

    for module in (anatomix.api, anatomix.resources):
        result = doctest.testmod(module, verbose=False)
        assert result.attempted >= 3 and result.failed == 0, module.__name__


def test_top_level_api_names() -> None:
    import anatomix
    from anatomix import OrganGraph, ShapeBank, Synthesizer

    assert ShapeBank.__module__.startswith("anatomix.bank") and Synthesizer.__module__ == "anatomix.api"
    assert OrganGraph.__name__ == "OrganGraph"
    assert {"ShapeBank", "OrganGraph", "Synthesizer"} <= set(dir(anatomix))
    out = subprocess.run([sys.executable, "-c", "import anatomix, sys; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # `import anatomix` stays light


def _small(cfg):  # noqa: ANN001, ANN202
    grid = cfg.grid.model_copy(update={"shape": (40, 40, 40), "spacing_mm": (4.0, 4.0, 4.0)})
    return cfg.model_copy(update={"grid": grid})


def test_dataset_json_ct_channel_and_consecutive_producible_labels(tmp_path: Path) -> None:
    from anatomix.api import synth_config
    from anatomix.synth import build_generator, write_dataset

    generator = build_generator(_small(synth_config(graph="abdomen")), seed=0)
    assert "esophagus" in generator.label_names().values()  # in the graph, not in the embedded bank
    write_dataset(generator, tmp_path / "o", n=2, seed=0, workers=1, progress=False)
    ds = json.loads((tmp_path / "o/dataset.json").read_text())
    assert ds["channel_names"] == {"0": "CT"}
    labels = ds["labels"]
    assert "esophagus" not in labels and labels["background"] == 0
    assert sorted(labels.values()) == list(range(len(labels)))  # consecutive, as nnU-Net v2 requires
    graph_values = {n: v for v, n in generator.label_names().items()}
    for name, value in labels.items():
        if name != "background":
            assert ds["anatomix_source_values"][name] == graph_values[name]
    for case in (0, 1):
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"o/labelsTr/anatomix_{case:06d}.nii.gz")))
        sample = generator.sample(case).label
        assert set(np.unique(written)) <= set(labels.values())
        for name, value in labels.items():  # every voxel keeps its organ, under the new value
            src = 0 if name == "background" else graph_values[name]
            assert (written.transpose(2, 1, 0) == value).sum() == (sample == src).sum()
    # a config switch for non-CT images
    generator = build_generator(_small(synth_config(graph="abdomen")).model_copy(update={"channel_name": "MR"}), seed=0)
    write_dataset(generator, tmp_path / "m", n=1, seed=0, workers=1, progress=False)
    assert json.loads((tmp_path / "m/dataset.json").read_text())["channel_names"] == {"0": "MR"}


@pytest.mark.parametrize("config", [None, "fdif"])
def test_api_cases_are_the_written_cases(tmp_path: Path, config: str | None) -> None:
    """Synthesizer(...).sample(i) holds the arrays of case i as written: label values, image bytes."""
    from anatomix.api import Synthesizer
    from anatomix.sample import image_to_write
    from anatomix.synth import write_dataset

    synth = Synthesizer("abdomen", seed=3) if config is None else Synthesizer(config=config, seed=3)
    write_dataset(synth.generator, tmp_path / "o", n=2, seed=3, workers=1, progress=False)
    ds = json.loads((tmp_path / "o/dataset.json").read_text())
    assert synth.label_names() == {v: n for n, v in ds["labels"].items() if v}
    for case in (0, 1):
        sample = synth.sample(case)
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"o/labelsTr/anatomix_{case:06d}.nii.gz")))
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"o/imagesTr/anatomix_{case:06d}_0000.nii.gz")))
        assert np.array_equal(label.transpose(2, 1, 0), sample.label)
        written = image_to_write(sample)
        assert image.dtype == written.dtype and np.array_equal(image.transpose(2, 1, 0), written)
    if config is None:  # the embedded bank has no esophagus: the written values are renumbered
        assert "esophagus" not in synth.label_names().values()
        assert not np.array_equal(synth.sample(0).label, synth.generator.sample(0).label)


def test_fdif_dataset_json_is_not_ct(tmp_path: Path) -> None:
    from anatomix.api import synth_config
    from anatomix.synth import build_generator, write_dataset

    cfg = synth_config(config="fdif").model_copy(update={"shape": (24, 24, 24), "n_objects": (3, 3)})
    write_dataset(build_generator(cfg, seed=0), tmp_path / "f", n=1, seed=0, workers=1, progress=False)
    ds = json.loads((tmp_path / "f/dataset.json").read_text())
    assert ds["channel_names"] == {"0": "synthetic"}
    assert sorted(ds["labels"].values()) == list(range(len(ds["labels"])))
