"""The wheel: what ships in it, and anatomix run from an installed wheel in an empty folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what a source tree needs to build (the same files a clean clone has)
SOURCE = ("anatomix", "configs", "graphs", "shapebank", "tests/fixtures/totalsegmentator", "pyproject.toml",
          "setup.py", "MANIFEST.in", "LICENSE", "NOTICE", "README.md", "constraints.txt")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built by ``pip wheel . --no-deps --no-build-isolation`` from a copy of the tree."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for rel in SOURCE:
        s, d = ROOT / rel, src / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir():
            shutil.copytree(s, d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(s, d)
    out = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out)], check=True, capture_output=True, timeout=300)
    (whl,) = out.glob("anatomix-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_contains_bank_graphs_configs_license(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    data = "anatomix/_data/"
    assert data + "shapebank/default/manifest.json" in names
    bank_files = [n for n in names if n.startswith(data + "shapebank/default/shapes/") and n.endswith(".bits.z")]
    assert len(bank_files) == len(list((ROOT / "shapebank/default/shapes").rglob("*.bits.z"))) > 0
    for yaml_file in (ROOT / "graphs").glob("*.yaml"):
        assert data + "graphs/" + yaml_file.name in names
    for yaml_file in (ROOT / "configs").glob("*.yaml"):
        assert data + "configs/" + yaml_file.name in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert data + "LICENSE" in names and data + "NOTICE" in names
    # every package of the checkout is in the wheel (packages.find stays automatic)
    for init in (ROOT / "anatomix").rglob("__init__.py"):
        assert init.relative_to(ROOT).as_posix() in names
    assert "anatomix/resources.py" in names and "anatomix/api.py" in names


def _venv_with_wheel(tmp: Path, wheel: Path) -> Path:
    """A fresh venv holding only the wheel; the test interpreter's packages are reachable after it."""
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # dependencies (torch, MONAI, ...) from the test interpreter's site-packages, as plain path
    # entries (an editable anatomix there is not activated: its .pth files are not processed)
    import sysconfig

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no other anatomix in sight
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--ignore-installed",
                    "-q", str(wheel)], check=True, capture_output=True, timeout=300, env=env)
    Path(site, "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir


@pytest.mark.slow
def test_installed_wheel_runs_from_an_empty_folder(wheel: Path, tmp_path: Path) -> None:
    env_dir = _venv_with_wheel(tmp_path, wheel)
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ANATOMIX_DEFAULT_BANK")}
    py, exe = str(env_dir / "bin" / "python"), str(env_dir / "bin" / "anatomix")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=300)

    where = run(py, "-c", "import anatomix, anatomix.resources as r; print(anatomix.__file__); print(r.resource_root())")
    assert where.returncode == 0, where.stderr
    file_, root = where.stdout.split()
    assert file_.startswith(str(env_dir)) and root.endswith(os.path.join("anatomix", "_data"))
    # every shipped config's input paths resolve inside the installed package
    check = run(py, "-c", """
import yaml
from anatomix import resources
from anatomix.api import synth_config
for name in resources.names("config"):
    path = resources.resolve("config", name)
    data = yaml.safe_load(path.read_text())
    if "trainer" in data:
        cfg = resources.resolve_lightning_config(path)
        args = cfg["data"]["init_args"]
        for key in ("synth_config", "datalist"):
            if args.get(key):
                assert resources.resolve_in("config" if key == "synth_config" else "graph", args[key]).is_file()
        for key in ("graph", "bank"):
            if (args.get("overrides") or {}).get(key):
                assert resources.resolve(key, args["overrides"][key]).exists()
    else:
        cfg = synth_config(config=name, graph="abdomen" if data.get("mode") == "anatomy" else None)
    print(name, "ok")
""")
    assert check.returncode == 0, check.stderr
    assert check.stdout.count(" ok") == len(list((ROOT / "configs").glob("*.yaml")))
    version = run(exe, "--version")
    assert version.returncode == 0 and version.stdout.strip() == "anatomix 0.1.0"
    listed = run(exe, "resources")
    assert listed.returncode == 0 and "--graph abdomen" in listed.stdout and "--config tiny" in listed.stdout
    synth = run(exe, "synth", "--graph", "abdomen", "-n", "1", "--out", "out", "--no-progress")
    assert synth.returncode == 0, synth.stderr
    assert (work / "out" / "labelsTr" / "anatomix_000000.nii.gz").is_file()
    assert (work / "out" / "imagesTr" / "anatomix_000000_0000.nii.gz").is_file()
    fit = run(exe, "fit", "--config", "tiny", "--print_config")
    assert fit.returncode == 0, fit.stderr
    assert "_data/configs/synth.yaml" in fit.stdout and "_data/graphs/abdomen.yaml" in fit.stdout
    assert sorted(p.name for p in work.iterdir()) == ["out"]  # nothing else written in the folder
