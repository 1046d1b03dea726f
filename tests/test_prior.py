"""`anatomix appearance learn`: robust per-structure statistics from image + label pairs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anatomix.errors import AnatomixError
from anatomix.io import write_volume
from anatomix.prior import learn_prior, load_prior

REPO = Path(__file__).resolve().parents[1]
TS = REPO / "tests" / "fixtures" / "totalsegmentator"


def _pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    img = (-100.0 + 5.0 * rng.standard_normal((40, 40, 30))).astype(np.float32)
    lab = np.zeros((40, 40, 30), dtype=np.uint8)
    lab[5:20, 5:35, 5:25] = 1
    lab[22:36, 5:35, 5:25] = 2
    img[lab == 1] = 55.0 + 10.0 * rng.standard_normal(int((lab == 1).sum()))
    img[lab == 2] = 150.0 + 20.0 * rng.standard_normal(int((lab == 2).sum()))
    img[lab == 2][::50] = 3000.0  # outliers do not move robust statistics
    ip, lp = tmp_path / "ct.nii.gz", tmp_path / "seg.nrrd"
    write_volume(ip, img, (1.0, 1.0, 2.0), (10.0, -5.0, 3.0))
    write_volume(lp, lab, (1.0, 1.0, 2.0), (10.0, -5.0, 3.0))
    table = tmp_path / "labels.json"
    table.write_text(json.dumps({"1": "liver", "2": "kidney_left"}))
    return ip, lp, table


def test_learn_prior_on_a_phantom_pair(tmp_path):
    ip, lp, table = _pair(tmp_path)
    prior = learn_prior([ip], [lp], label_table=table)
    st = prior["structures"]
    assert set(st) == {"liver", "kidney_left"}
    assert st["liver"]["mean_hu"] == pytest.approx(55.0, abs=1.5)
    assert st["liver"]["std_hu"] == pytest.approx(10.0, rel=0.1)
    assert st["kidney_left"]["mean_hu"] == pytest.approx(150.0, abs=3.0)
    assert st["liver"]["texture_mm"] < 1.0  # white noise: shorter than a voxel


def _learn_cli(image: str, labels: str, out: Path) -> None:
    """`anatomix appearance learn` in a subprocess on a committed pair; it must succeed."""
    r = subprocess.run([sys.executable, "-m", "anatomix.cli", "appearance", "learn", "--images", str(TS / image),
                        "--labels", str(TS / labels), "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr


def test_learn_prior_on_the_committed_totalsegmentator_pair(tmp_path):
    out = tmp_path / "prior.json"
    _learn_cli("example_ct.nii.gz", "example_seg_fast_force_split.nii.gz", out)
    st = json.loads(out.read_text())["structures"]
    assert -200 < st["liver"]["mean_hu"] < 250 and st["vertebrae_L3"]["mean_hu"] > 100
    assert st["subcutaneous_fat" if "subcutaneous_fat" in st else "lung_lower_lobe_left"]["mean_hu"] < -300
    assert load_prior(str(out))["liver"]["mean_hu"] == st["liver"]["mean_hu"]


def test_the_shipped_prior_is_rebuilt_from_the_committed_pair_byte_for_byte(tmp_path):
    """anatomix/data/ct_prior.json is what the README's `appearance learn` command writes."""
    out = tmp_path / "ct_prior.json"
    _learn_cli("example_ct_sm.nii.gz", "example_seg.nii.gz", out)
    assert out.read_bytes() == (REPO / "anatomix" / "data" / "ct_prior.json").read_bytes()


def test_learn_prior_errors(tmp_path):
    ip, lp, table = _pair(tmp_path)
    with pytest.raises(AnatomixError, match="one label map per image"):
        learn_prior([ip, ip], [lp], label_table=table)
    with pytest.raises(AnatomixError, match="embeds no label names"):
        learn_prior([ip], [lp])
    assert "liver" in load_prior("default")  # the shipped prior
