"""Reliability and security (issue 15): hostile and impossible inputs, signals, concurrent runs.

One section per numbered item of the issue. Every refusal is checked for a located message
(file, what was expected, what was found) and for leaving nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from typer.testing import CliRunner

from anatomix.bank import BankError, BankManifest, ShapeBank, default_bank_path, ingest_masks
from anatomix.cli import app
from anatomix.errors import AnatomixError, InputError
from anatomix.labels import preset

REPO = Path(__file__).resolve().parents[1]
FL = {v: k for k, v in preset("flare22").items()}  # organ -> FLARE22 value
SP = 2.0


def _phantom() -> np.ndarray:
    """A small RAS (x, y, z) toy abdomen in FLARE22 values: liver, spleen, both kidneys.

    RAS: x grows toward the subject's right, so the right kidney is at larger x.
    """
    shape = (60, 40, 40)
    x, y, z = np.meshgrid(*[SP * (np.arange(n) - n / 2) for n in shape], indexing="ij")
    a = np.zeros(shape, dtype=np.uint8)

    def ball(cx, cy, cz, r):
        return (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= r * r

    a[ball(30, 5, 10, 18)] = FL["liver"]
    a[ball(-35, 0, 10, 10)] = FL["spleen"]
    a[ball(25, -10, -15, 9)] = FL["kidney_right"]
    a[ball(-25, -10, -15, 9)] = FL["kidney_left"]
    return a


def _write(path: Path, arr: np.ndarray, spacing=(SP, SP, SP)) -> Path:
    """Write a RAS (x, y, z) array with SimpleITK (LPS file geometry)."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0])
    sitk.WriteImage(img, str(path), True)
    return path


def _quiet_ingest(*args, **kwargs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ingest_masks(*args, **kwargs)


# ---- 1. a tampered bank is refused on load -----------------------------------------------------


def _bank_copy(tmp_path: Path) -> tuple[Path, dict]:
    d = tmp_path / "bank"
    shutil.copytree(default_bank_path(), d)
    return d, json.loads((d / "manifest.json").read_text())


def _rec(m: dict, organ: str) -> dict:
    return next(r for r in m["shapes"] if r["organ"] == organ)


def _save_manifest(d: Path, m: dict, rehash: bool) -> None:
    if rehash:  # a consistent manifest: only the file-level checks can catch what was done
        m["content_hash"] = ""
        m["content_hash"] = BankManifest.model_validate(m).compute_hash()
    (d / "manifest.json").write_text(json.dumps(m, indent=1))


def _tamper(kind: str, d: Path, m: dict) -> str:
    """Damage the bank copy ``d`` one way; return a regex the refusal must match."""
    liver, spleen = _rec(m, "liver"), _rec(m, "spleen")
    lf = d / liver["file"]
    if kind == "file_swapped":  # liver replaced by a spleen
        shutil.copyfile(d / spleen["file"], lf)
        return "liver.*SHA-256.*changed or swapped"
    if kind == "truncated":
        lf.write_bytes(lf.read_bytes()[: lf.stat().st_size // 2])
        return "liver.*SHA-256"
    if kind == "manifest_edited":
        liver["volume_ml"] = 1.0
        _save_manifest(d, m, rehash=False)
        return "content hash"
    if kind == "symlink_file":  # same bytes, reached through a link
        real = d.parent / "elsewhere.bits.z"
        shutil.copyfile(lf, real)
        lf.unlink()
        lf.symlink_to(real)
        return "symbolic link"
    if kind == "symlink_folder":
        real = d.parent / "liver_elsewhere"
        shutil.copytree(lf.parent, real)
        shutil.rmtree(lf.parent)
        lf.parent.symlink_to(real)
        return "shapes/liver.*symbolic link"
    if kind == "system_file":  # a record pointing at a system file through a link
        lf.unlink()
        lf.symlink_to("/etc/hostname")
        return "symbolic link"
    if kind == "zero_spacing":
        m["spacing_mm"] = [0, 0, 0]
        _save_manifest(d, m, rehash=False)
        return "spacing_mm.*0.1 to 20 mm"
    if kind == "huge_shape":
        liver["shape_vox"] = [100000, 100000, 100000]
        _save_manifest(d, m, rehash=False)
        return "shape_vox.*crop size"
    if kind == "huge_extent":  # every axis allowed alone, the crop 4 m wide
        liver["shape_vox"] = [4000, 10, 10]
        _save_manifest(d, m, rehash=False)
        return "liver.*1000 mm"
    if kind == "nan_origin":
        liver["origin_mm"] = [float("nan"), 0.0, 0.0]
        (d / "manifest.json").write_text(json.dumps(m))  # JSON's NaN token
        return "origin_mm.*finite"
    if kind == "path_escape":
        liver["file"] = "../elsewhere.bits.z"
        _save_manifest(d, m, rehash=False)
        return "relative path"
    if kind == "missing_file":
        lf.unlink()
        return "missing"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["file_swapped", "truncated", "manifest_edited", "symlink_file",
                                  "symlink_folder", "system_file", "zero_spacing", "huge_shape",
                                  "huge_extent", "nan_origin", "path_escape", "missing_file"])
def test_tampered_bank_refused_on_every_load(tmp_path: Path, kind: str) -> None:
    d, m = _bank_copy(tmp_path)
    pattern = _tamper(kind, d, m)
    with pytest.raises(BankError, match=pattern) as exc:
        ShapeBank.load(d)  # not only with verify=True
    assert str(d) in str(exc.value) and "rebuild" in str(exc.value)


def test_compression_bomb_is_decoded_within_the_declared_size(tmp_path: Path) -> None:
    d, m = _bank_copy(tmp_path)
    liver = _rec(m, "liver")
    zeros = bytes(16 << 20)

    def bomb_of(chunks: int) -> bytes:
        c = zlib.compressobj(9)
        return b"".join(c.compress(zeros) for _ in range(chunks)) + c.flush()

    for chunks in (32, 8):  # 512 MB: larger than the crop can compress to; 128 MB: small enough
        bomb = bomb_of(chunks)
        (d / liver["file"]).write_bytes(bomb)
        liver["sha256"] = __import__("hashlib").sha256(bomb).hexdigest()
        _save_manifest(d, m, rehash=True)
        if chunks == 32:
            with pytest.raises(BankError, match="what its declared shape can take"):
                ShapeBank.load(d)
    bank = ShapeBank.load(d)  # consistent hashes, plausible size: the decoder must hold the line
    tracemalloc.start()
    try:
        with pytest.raises(BankError, match="longer than the declared shape"):
            bank.mask(liver["shape_id"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20  # one crop (~0.2 MB packed), not 512 MB
    # a stream shorter than the declared crop is refused too (no zero padding)
    short = zlib.compress(bytes(10))
    (d / liver["file"]).write_bytes(short)
    liver["sha256"] = __import__("hashlib").sha256(short).hexdigest()
    _save_manifest(d, m, rehash=True)
    with pytest.raises(BankError, match="shorter than the declared shape"):
        ShapeBank.load(d).mask(liver["shape_id"])
    with pytest.raises(BankError, match="shorter"):
        ShapeBank.load(d, verify=True)


def test_synth_on_a_bank_that_fails_while_sampling_leaves_nothing(tmp_path: Path) -> None:
    d, m = _bank_copy(tmp_path)
    liver = _rec(m, "liver")
    short = zlib.compress(bytes(10))  # consistent hashes: only decoding the mask finds it
    (d / liver["file"]).write_bytes(short)
    liver["sha256"] = __import__("hashlib").sha256(short).hexdigest()
    _save_manifest(d, m, rehash=True)
    cfg = tmp_path / "small.yaml"
    cfg.write_text("mode: anatomy\ngrid: {shape: [24, 24, 24], spacing_mm: [6.0, 6.0, 6.0]}\n")
    out = tmp_path / "synth"
    r = CliRunner().invoke(app, ["synth", "--graph", str(REPO / "graphs" / "abdomen.yaml"), "--bank", str(d),
                                 "--config", str(cfg), "-n", "1", "--no-progress", "--out", str(out)])
    assert r.exit_code == 1, r.output
    assert "liver" in r.output and "shorter than the declared shape" in r.output.replace("\n", " ")
    assert not out.exists()  # not a folder holding only its run file


def test_embedded_bank_loads_and_verifies() -> None:
    bank = ShapeBank.load(default_bank_path(), verify=True)
    assert len(bank.manifest.shapes) > 0


# ---- 2. workers die with their parent ------------------------------------------------------------

_SLOW_GEN = '''
import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

class SlowGen:
    seed = 0

    def __init__(self, d):
        self.d = d

    def sample(self, index):
        open(os.path.join(self.d, f"w{os.getpid()}"), "w").close()
        time.sleep(120)

    def label_names(self):
        return {1: "liver"}

    def summary(self, records):
        return {}
'''

_PARENT = '''
import os, signal, sys
# a shell starts background jobs with SIGINT ignored, and the ignore is inherited: a suite run in
# the background would see Ctrl-C do nothing. Ctrl-C as in a terminal:
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slowgen import SlowGen
from anatomix.errors import Interrupted
from anatomix.synth import write_dataset
if __name__ == "__main__":
    d = os.path.dirname(os.path.abspath(__file__))
    try:
        write_dataset(SlowGen(d), os.path.join(d, "out"), n=4, workers=2, progress=False)
    except Interrupted as e:
        print(e, flush=True)
        sys.exit(130)
'''


def _children(pid: int) -> list[int]:
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(p.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie holds no memory; the new parent (init) reaps it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_workers_die_with_their_parent(tmp_path: Path, sig: signal.Signals) -> None:
    (tmp_path / "slowgen.py").write_text(_SLOW_GEN)
    (tmp_path / "parent.py").write_text(_PARENT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("w*"))) < 2:  # both workers busy in sample()
            assert parent.poll() is None, parent.communicate()
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.2)
        kids = _children(parent.pid)  # the two workers and multiprocessing's resource tracker
        workers = [int(p.name[1:]) for p in tmp_path.glob("w*")]
        assert set(workers) <= set(kids)
        os.kill(parent.pid, sig)
        out, err = parent.communicate(timeout=30)
        t0 = time.monotonic()
        while any(_alive(k) for k in kids) and time.monotonic() - t0 < 5:
            time.sleep(0.1)
        assert not [k for k in kids if _alive(k)], "processes outlived their parent"
        if sig == signal.SIGINT:
            assert parent.returncode == 130
            assert "interrupted before the first case was written" in out and "run the command again" in out
            assert "Traceback" not in err
    finally:
        if parent.poll() is None:
            parent.kill()
        for k in _children(parent.pid):
            os.kill(k, signal.SIGKILL)


# ---- 3. YAML alias bombs and deep documents are refused fast ---------------------------------------


def _alias_bomb(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _readers():
    from anatomix.bank import resolve_labels
    from anatomix.graph import OrganGraph
    from anatomix.config import load_synth_config

    return {"labels": resolve_labels, "graph": OrganGraph.load, "synth": load_synth_config}


@pytest.mark.parametrize("reader", ["labels", "graph", "synth"])
@pytest.mark.parametrize("doc", ["alias_bomb", "deep_flow", "deep_block"])
def test_yaml_bombs_refused_fast_with_bounded_messages(tmp_path: Path, reader: str, doc: str) -> None:
    text = {"alias_bomb": _alias_bomb(), "deep_flow": "a: " + "[" * 100_000 + "]" * 100_000,
            "deep_block": "- " * 100_000 + "x\n"}[doc]
    f = tmp_path / "hostile.yaml"
    f.write_text(text)
    read = _readers()[reader]  # imports outside the measurement
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(AnatomixError) as exc:
            read(f)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 1.0 and peak < 100 << 20
    msg = str(exc.value)
    assert str(f) in msg and len(msg) < 2000
    assert ("nodes (aliases expanded)" in msg) if doc == "alias_bomb" else ("nesting depth" in msg)


def test_safeload_allows_ordinary_anchors_and_bounds_excerpts() -> None:
    from anatomix.safeload import excerpt, load_yaml_text

    assert load_yaml_text("a: &x {b: 1}\nc: *x\n") == {"a": {"b": 1}, "c": {"b": 1}}
    loop: list = []
    loop.append(loop)
    assert len(excerpt(loop)) <= 80 and len(excerpt("x" * 10**6)) <= 80
    assert len(excerpt(list(range(10**6)), 60)) <= 60


# ---- 4. atomic bank output under a lock ------------------------------------------------------------


def test_two_concurrent_ingests_exactly_one_wins(tmp_path: Path, monkeypatch) -> None:
    import anatomix.bank.ingest as ingest_mod

    src = _write(tmp_path / "a.nii.gz", _phantom())
    out = tmp_path / "bank"
    real_write = ingest_mod._write_bank
    both_checked = threading.Barrier(2, timeout=60)

    def racing_write(*args, **kwargs):  # both runs passed the early "exists?" check
        both_checked.wait()
        return real_write(*args, **kwargs)

    monkeypatch.setattr(ingest_mod, "_write_bank", racing_write)
    results: dict[float, object] = {}

    def run(spacing: float) -> None:
        try:
            results[spacing] = _quiet_ingest([src], out, labels="flare22", spacing_mm=spacing)
        except InputError as e:
            results[spacing] = e

    threads = [threading.Thread(target=run, args=(s,)) for s in (2.0, 3.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    won = [s for s, r in results.items() if isinstance(r, BankManifest)]
    lost = [r for r in results.values() if isinstance(r, InputError)]
    assert len(won) == 1 and len(lost) == 1
    assert "exists; pass --overwrite" in str(lost[0])
    assert ShapeBank.load(out).spacing_mm == (won[0],) * 3  # the bank on disk is the winner's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "bank"]  # no lock/temp left


def test_stale_temp_folders_of_a_killed_ingest_are_removed(tmp_path: Path) -> None:
    src = _write(tmp_path / "a.nii.gz", _phantom())
    for name in (".bank.tmp-abc123", ".bank.old-def456"):  # what a SIGKILLed run leaves
        (tmp_path / name / "shapes").mkdir(parents=True)
        (tmp_path / name / "shapes" / "x.bits.z").write_bytes(b"x")
    (tmp_path / ".bank.lock").write_bytes(b"")  # and its (unlocked) lock file
    _quiet_ingest([src], tmp_path / "bank", labels="flare22")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "bank"]


# ---- 5. geometry and values of inputs ---------------------------------------------------------------


@pytest.mark.parametrize("pixdim", [0.0, float("nan"), -1e-9])
def test_nifti_pixdim_read_from_the_header(tmp_path: Path, pixdim: float) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(_phantom(), np.diag([SP, SP, SP, 1.0]))
    img.header["pixdim"][1:4] = [pixdim, SP, SP]
    f = tmp_path / "zero.nii.gz"
    nib.save(img, f)
    with pytest.raises(InputError, match=r"zero\.nii\.gz: expected voxel sizes \(NIfTI pixdim"):
        _quiet_ingest([f], tmp_path / "bank", labels="flare22")
    assert not (tmp_path / "bank").exists()


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_inf_voxels_refused_in_every_format(tmp_path: Path, suffix: str, bad: float) -> None:
    a = _phantom().astype(np.float32)
    a[a == FL["liver"]] = bad  # the whole liver (SimpleITK reads NaN in NIfTI as 0)
    f = _write(tmp_path / f"nan{suffix}", a)
    with pytest.raises(InputError, match="expected finite voxel values, found NaN or infinite"):
        _quiet_ingest([f], tmp_path / "bank", labels="flare22")
    assert not (tmp_path / "bank").exists()


@pytest.mark.parametrize("spacing", [1e-6, 1e6])
def test_absurd_spacing_refused_before_work(tmp_path: Path, spacing: float) -> None:
    f = _write(tmp_path / "a.mha", _phantom(), spacing=(spacing, SP, SP))
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=r"a\.mha: expected voxel sizes of 0\.01 to 100 mm"):
        _quiet_ingest([f], tmp_path / "bank", labels="flare22")
    assert time.perf_counter() - t0 < 5
    with pytest.raises(InputError, match="--spacing: expected 1 or 3 values from 0.1 to 20 mm"):
        _quiet_ingest([_write(tmp_path / "b.mha", _phantom())], tmp_path / "bank", labels="flare22",
                      spacing_mm=spacing)


# ---- 6. graph numbers finite and physically sensible -------------------------------------------------


def _first(relations: list, kind: str) -> dict:
    return next(r for r in relations if r["type"] == kind)


_GRAPH_EDITS = {
    "nan_anchor_mean": (lambda g: g["organs"]["liver"]["anchor"].__setitem__("mean_mm", [float("nan"), 0, 0]),
                        r"organs\.liver\.anchor\.mean_mm"),
    "far_anchor_mean": (lambda g: g["organs"]["liver"]["anchor"].__setitem__("mean_mm", [1e6, 0, 0]),
                        r"organs\.liver\.anchor\.mean_mm.*1000 mm"),
    "huge_covariance": (lambda g: g["organs"]["liver"]["anchor"].__setitem__(
        "cov_mm", [[1e300, 0, 0], [0, 1e300, 0], [0, 0, 1e300]]), r"organs\.liver\.anchor\.cov_mm.*300 mm"),
    "nan_offset_mean": (lambda g: _first(g["relations"], "attached_to")["offset"].__setitem__(
        "mean_mm", [0, float("nan"), 0]), r"relations\[\d+\]\.offset\.mean_mm"),
    "nan_margin": (lambda g: _first(g["relations"], "direction").__setitem__("margin_mm", float("nan")),
                   r"relations\[\d+\]\.margin_mm"),
    "inf_tolerance": (lambda g: _first(g["relations"], "contact").__setitem__("tolerance", float("inf")),
                      r"relations\[\d+\]\.tolerance"),
    "absurd_scale": (lambda g: g["organs"]["liver"].__setitem__("scale", [1000, 10000]),
                     r"organs\.liver\.scale.*0\.1 to 5"),
    "absurd_rotation": (lambda g: g["organs"]["liver"].__setitem__("rotation_deg", [[-1e300, 1e300], [0, 0], [0, 0]]),
                        r"organs\.liver\.rotation_deg.*180 degrees"),
    "absurd_volume": (lambda g: g["organs"]["liver"].__setitem__("volume_ml", [1, 1e9]),
                      r"organs\.liver\.volume_ml.*10000 ml"),
    "inf_default": (lambda g: g["defaults"].__setitem__("contact_tolerance_mm", float("inf")),
                    r"defaults\.contact_tolerance_mm"),
}


@pytest.mark.parametrize("edit", sorted(_GRAPH_EDITS))
def test_graph_numbers_must_be_finite_and_sensible(tmp_path: Path, edit: str) -> None:
    from anatomix.graph import GraphError, OrganGraph

    g = yaml.safe_load((REPO / "graphs" / "abdomen.yaml").read_text())
    change, pattern = _GRAPH_EDITS[edit]
    change(g)
    f = tmp_path / "g.yaml"
    f.write_text(yaml.safe_dump(g, sort_keys=False))
    with pytest.raises(GraphError, match=pattern) as exc:
        OrganGraph.load(f)
    assert str(f) in str(exc.value)
    r = CliRunner().invoke(app, ["graph", "check", "--graph", str(f)])
    assert r.exit_code == 1 and "Traceback" not in r.output


def test_shipped_graph_is_inside_the_ranges() -> None:
    from anatomix.graph import OrganGraph

    assert len(OrganGraph.load(REPO / "graphs" / "abdomen.yaml")) == 14


def test_synth_exits_non_zero_on_hard_violations_unless_allowed(tmp_path: Path) -> None:
    g = yaml.safe_load((REPO / "graphs" / "abdomen.yaml").read_text())
    # hard rules no placement can meet together: kidney centroids 190 mm apart and their surfaces
    # touching (each kidney is ~50 mm wide)
    rule = next(r for r in g["relations"] if r["type"] == "direction" and r["a"] == "kidney_left"
                and r["b"] == "kidney_right")
    rule.update(margin_mm=190.0, hard=True)
    g["relations"].append({"type": "contact", "a": "kidney_left", "b": "kidney_right", "hard": True})
    graph = tmp_path / "impossible.yaml"
    graph.write_text(yaml.safe_dump(g, sort_keys=False))
    cfg = tmp_path / "small.yaml"
    cfg.write_text("mode: anatomy\ngrid: {shape: [24, 24, 24], spacing_mm: [6.0, 6.0, 6.0]}\n")
    args = ["synth", "--graph", str(graph), "--config", str(cfg), "-n", "1", "--no-progress"]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert r.exit_code == 1, r.output
    assert "1 case(s) miss a required organ or break a hard constraint" in r.output.replace("\n", " ")
    assert "--allow-violations" in r.output
    rec = json.loads(next((tmp_path / "a" / "records").glob("*.json")).read_text())
    assert rec["constraints"]["hard_ok"] is False  # the case is flagged in its record
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--allow-violations"])
    assert r.exit_code == 0, r.output


# ---- 7. messages, not tracebacks ---------------------------------------------------------------------


def _bad_checkpoints(tmp_path: Path) -> dict[str, Path]:
    import torch

    good = {"state_dict": {"net.w": torch.zeros(2)}, "pytorch-lightning_version": "2.4.0"}
    torch.save(good, tmp_path / "good.ckpt")
    full = (tmp_path / "good.ckpt").read_bytes()
    files = {"truncated": full[: len(full) // 2], "random": os.urandom(4096)}
    out = {}
    for name, data in files.items():
        (tmp_path / f"{name}.ckpt").write_bytes(data)
        out[name] = tmp_path / f"{name}.ckpt"
    torch.save({"w": torch.zeros(2)}, tmp_path / "state_dict_only.ckpt")
    out["state_dict_only"] = tmp_path / "state_dict_only.ckpt"
    out["missing"] = tmp_path / "missing.ckpt"
    out["folder"] = tmp_path
    return out


def test_bad_checkpoints_refused_by_both_routes(tmp_path: Path) -> None:
    from torch import nn

    from anatomix.train.checkpoint import CheckpointError, check_lightning_checkpoint, load_pretrained

    for name, path in _bad_checkpoints(tmp_path).items():
        with pytest.raises(CheckpointError) as by_ckpt_path:
            check_lightning_checkpoint(path)
        assert str(path) in str(by_ckpt_path.value)
        if name == "state_dict_only":  # fine as pre-trained weights, not as a resume point
            assert "--model.pretrained" in str(by_ckpt_path.value)
            continue
        with pytest.raises(CheckpointError) as by_pretrained:
            load_pretrained(nn.Linear(2, 2), path)
        first = str(by_pretrained.value).split(":")[0].split(" it ")[0]
        assert first.split()[0] in str(by_ckpt_path.value)  # same wording: "cannot"/"checkpoint"


def test_bad_ckpt_path_through_the_lightning_cli_exits_with_a_message(tmp_path: Path, capsys) -> None:
    from anatomix.train.cli import lightning_main

    bad = _bad_checkpoints(tmp_path)
    for name in ("truncated", "state_dict_only"):
        with pytest.raises(SystemExit) as e:
            lightning_main(["validate", "--config", str(REPO / "configs" / "tiny.yaml"),
                            "--ckpt_path", str(bad[name]), "--trainer.logger", "false",
                            "--trainer.default_root_dir", str(tmp_path / "run")])
        assert e.value.code == 1
        err = capsys.readouterr().err
        assert str(bad[name]) in err.replace("\n", "") and "Traceback" not in err
        assert ("cannot read checkpoint" if name == "truncated" else "full Lightning checkpoint") in err
    # the same file as --model.pretrained: the same message, before Lightning writes config.yaml
    with pytest.raises(SystemExit) as e:
        lightning_main(["fit", "--config", str(REPO / "configs" / "tiny.yaml"),
                        "--model.pretrained", str(bad["truncated"]), "--trainer.logger", "false",
                        "--trainer.default_root_dir", str(tmp_path / "run")])
    assert e.value.code == 1 and "cannot read checkpoint" in capsys.readouterr().err
    assert not list(tmp_path.rglob("config.yaml"))  # no Lightning stub left behind
    # readable weights of another network: refused when the module is built, before config.yaml too
    import torch

    other = tmp_path / "other_network.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(SystemExit) as e:
        lightning_main(["fit", "--config", str(REPO / "configs" / "tiny.yaml"),
                        "--model.pretrained", str(other), "--trainer.logger", "false",
                        "--trainer.default_root_dir", str(tmp_path / "run")])
    assert e.value.code == 1 and "no tensor this network can use" in capsys.readouterr().err
    assert not list(tmp_path.rglob("config.yaml"))


def test_unwritable_outputs_refused_before_computation(tmp_path: Path) -> None:
    runner = CliRunner()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (["synth", "-n", "2", "--config", str(REPO / "configs" / "fdif.yaml"), "--out", str(a_file / "sub")],
         "is a file"),
        (["synth", "-n", "2", "--config", str(REPO / "configs" / "fdif.yaml"), "--out", str(a_file)],
         "expected a folder, found a file"),
        (["synth", "-n", str(10**12), "--config", str(REPO / "configs" / "fdif.yaml"), "--out",
          str(tmp_path / "o")], "-n: expected 0 to 10,000,000 cases"),
        (["evaluate", "--real", str(tmp_path), "--synthetic", str(tmp_path), "--out", str(tmp_path)],
         "expected a file path, found a folder"),
        (["evaluate", "--real", str(tmp_path), "--synthetic", str(tmp_path), "--out", str(tmp_path / "r.json"),
          "--plot", str(a_file / "p.png")], "is a file"),
        (["ingest-masks", str(tmp_path), "--out", str(a_file / "bank")], "is a file"),
    ]
    for args, message in cases:
        t0 = time.perf_counter()
        r = runner.invoke(app, args)
        assert r.exit_code == 1, (args, r.output)
        assert message in r.output.replace("\n", ""), (args, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit)
        assert time.perf_counter() - t0 < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing created


def test_full_disk_gives_a_message_and_keeps_the_old_output(tmp_path: Path, monkeypatch) -> None:
    import errno

    import anatomix.io as io_mod

    src = _write(tmp_path / "a.nii.gz", _phantom())
    bank = tmp_path / "bank"
    _quiet_ingest([src], bank, labels="flare22")
    before = {p: p.read_bytes() for p in bank.rglob("*") if p.is_file()}

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    r = CliRunner().invoke(app, ["ingest-masks", str(src), "--out", str(bank), "--labels", "flare22",
                                 "--spacing", "3", "--overwrite"])
    monkeypatch.undo()
    assert r.exit_code == 1 and "No space left on device" in r.output, r.output
    assert {p: p.read_bytes() for p in bank.rglob("*") if p.is_file()} == before  # old bank intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "bank"]  # no temp folder

    def full_volume(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(io_mod, "write_volume", full_volume)
    out = tmp_path / "synth"
    cfg = tmp_path / "fdif_small.yaml"
    cfg.write_text("mode: fdif\nshape: [16, 16, 16]\nn_objects: [2, 2]\n")
    r = CliRunner().invoke(app, ["synth", "-n", "1", "--config", str(cfg), "--out", str(out), "--no-progress"])
    cfg.unlink()
    assert r.exit_code == 1 and "No space left on device" in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert not out.exists()


def test_evaluate_refuses_an_existing_report_without_overwrite(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    report.write_text("{}")
    r = CliRunner().invoke(app, ["evaluate", "--real", str(tmp_path), "--synthetic", str(tmp_path),
                                 "--out", str(report)])
    assert r.exit_code == 1 and "exists; pass --overwrite" in r.output
    assert report.read_text() == "{}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_refused(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = CliRunner().invoke(app, ["synth", "-n", "1", "--config", str(REPO / "configs" / "fdif.yaml"),
                                     "--out", str(ro / "out")])
        assert r.exit_code == 1 and "not writable" in r.output
    finally:
        ro.chmod(0o755)


# ---- 9. a real-label preset that swaps left and right ------------------------------------------------


def test_evaluate_refuses_real_labels_with_left_and_right_swapped(tmp_path: Path) -> None:
    from anatomix.evaluate import EvaluationError, evaluate

    a = _phantom()
    files = [_write(tmp_path / f"real{i}.nii.gz", np.roll(a, i, axis=2)) for i in range(3)]
    swapped = dict(preset("flare22"))
    kl, kr = FL["kidney_left"], FL["kidney_right"]
    swapped[kl], swapped[kr] = "kidney_right", "kidney_left"
    with pytest.raises(EvaluationError, match=r"swapped for kidney_left/kidney_right in 3 of 3 real maps"):
        evaluate(files, files[:1], real_labels=swapped, synthetic_labels="flare22")
    report = evaluate(files, files[:1], real_labels="flare22", synthetic_labels="flare22")
    assert report["summary"]["cases_with_direction_errors"]["real_loo"] == 0


def test_evaluate_refuses_a_preset_that_swaps_one_pair_of_several(tmp_path: Path) -> None:
    """A label file that swapped only the kidneys of maps that also hold both adrenals was
    accepted (exit 0): the check refused only maps with every pair swapped."""
    from anatomix.evaluate import EvaluationError, evaluate

    a = _phantom()
    x = np.arange(a.shape[0])[:, None, None]
    top = np.zeros_like(a, dtype=bool)
    top[:, 18:22, 30:34] = True  # adrenals above the kidneys, on their sides (x grows to the right)
    a[top & (x >= 14) & (x < 18)] = FL["adrenal_gland_left"]
    a[top & (x >= 42) & (x < 46)] = FL["adrenal_gland_right"]
    files = [_write(tmp_path / f"real{i}.nii.gz", np.roll(a, i, axis=2)) for i in range(3)]
    swapped = dict(preset("flare22"))
    swapped[FL["kidney_left"]], swapped[FL["kidney_right"]] = "kidney_right", "kidney_left"
    with pytest.raises(EvaluationError, match=r"swapped for kidney_left/kidney_right in 3 of 3 real maps"):
        evaluate(files, files[:1], real_labels=swapped, synthetic_labels="flare22")
    assert evaluate(files, files[:1], real_labels="flare22", synthetic_labels="flare22")["summary"]


# ---- 10. minor -------------------------------------------------------------------------------------


def test_brackets_in_paths_and_values_are_printed_as_text(tmp_path: Path) -> None:
    """rich read "[/b]" in a path as markup (MarkupError traceback) and dropped "[nan, 2.0, 2.0]"
    from messages."""
    folder = tmp_path / "g[/b]"
    folder.mkdir(parents=True)
    res = CliRunner().invoke(app, ["graph", "check", "--graph", str(folder / "missing[left].yaml")])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.exception  # not a MarkupError
    assert "g[/b]/missing[left].yaml" in res.output
    a = _phantom()
    bad = _write(tmp_path / "pixdim[nan].nii.gz", a)
    import nibabel as nib
    img = nib.load(bad)
    hdr = img.header.copy()
    hdr["pixdim"][1] = np.nan
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, hdr), bad)
    res = CliRunner().invoke(app, ["ingest-masks", str(bad), "--labels", "flare22", "--out", str(tmp_path / "bank")])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.exception
    assert "pixdim[nan].nii.gz" in res.output and "[nan, 2.0, 2.0]" in res.output


def test_truncated_manifest_is_reported_as_truncated_json(tmp_path: Path) -> None:
    d, _ = _bank_copy(tmp_path)
    text = (d / "manifest.json").read_text()
    (d / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.raises(BankError, match=r"manifest\.json: expected a valid bank manifest") as e:
        ShapeBank.load(d)
    assert "expected valid JSON, found a syntax error: EOF while parsing" in str(e.value)
    assert "(the file is truncated)" in str(e.value) and "invalid JSON" not in str(e.value)


def test_ctrl_c_during_ingest_says_nothing_was_written(tmp_path: Path, monkeypatch) -> None:
    import anatomix.bank.ingest as ingest_mod

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ingest_mod, "_subject_geometry", interrupted)
    src = _write(tmp_path / "a.nii.gz", _phantom())
    r = CliRunner().invoke(app, ["ingest-masks", str(src), "--out", str(tmp_path / "bank"),
                                 "--labels", "flare22"])
    assert r.exit_code == 130
    assert "interrupted: nothing was written" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]


def test_huge_float_label_value_reported_as_found(tmp_path: Path) -> None:
    a = _phantom().astype(np.float64)
    a[0, 0, 0] = 1e300
    f = _write(tmp_path / "big.mha", a)
    with pytest.raises(InputError) as e:
        _quiet_ingest([f], tmp_path / "bank", labels="flare22")
    assert "-9223372036854775808" not in str(e.value)
