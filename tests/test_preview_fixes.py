"""Preview: images scaled by their own range, a legend that fits, distinct neighbouring colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from anatomix.preview import MAX_LEGEND_ENTRIES, ORGAN_COLOURS, display_range, legend_layout, organ_colours

ROOT = Path(__file__).resolve().parents[1]


def test_display_range() -> None:
    assert display_range(np.linspace(0, 1, 100)) == (0.0, 1.0)
    lo, hi = display_range(np.linspace(0, 128, 1001))
    assert lo < 1.0 and 127.0 < hi <= 128.0
    assert display_range(np.full(10, 5.0)) == (5.0, 6.0)


def test_fdif_preview_is_not_a_white_square(tmp_path: Path) -> None:
    from PIL import Image

    from anatomix.api import synth_config
    from anatomix.preview import preview_dataset
    from anatomix.synth import build_generator, write_dataset

    cfg = synth_config(config="fdif").model_copy(update={"shape": (32, 32, 32), "n_objects": (6, 6)})
    write_dataset(build_generator(cfg, seed=0), tmp_path / "f", n=1, seed=0, workers=1, progress=False)
    png = preview_dataset(tmp_path / "f", tmp_path / "p.png", cases=1)
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    h, w, _ = rgb.shape
    panel = rgb[int(0.15 * h):int(0.75 * h), int(0.02 * w):int(0.23 * w)]  # the plain image panel
    white = (panel.min(axis=2) >= 250).mean()
    assert white < 0.5 and panel.std() > 10


def test_legend_fits_or_counts() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {i: f"class_{i}" for i in range(1, 110)}
    fig = plt.figure(figsize=(12, 3.2))
    legend_layout(fig, plt, set(range(1, 110)), names, organ_colours(names), 1)
    assert not fig.legends and any("109 classes" in t.get_text() for t in fig.texts)
    plt.close(fig)
    fig = plt.figure(figsize=(12, 3.2))
    bottom = legend_layout(fig, plt, set(range(1, 15)), names, organ_colours(names), 1)
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 14 and 0 < bottom < 0.4
    plt.close(fig)
    assert MAX_LEGEND_ENTRIES < 109


def test_neighbouring_organs_have_distinct_colours() -> None:
    from skimage.color import rgb2lab

    graph = yaml.safe_load((ROOT / "graphs/abdomen.yaml").read_text())
    pairs = {frozenset((r["a"], r["b"])) for r in graph["relations"] if r["type"] == "contact"}
    pairs |= {frozenset(p) for p in [("kidney_left", "kidney_right"), ("adrenal_gland_left", "adrenal_gland_right"),
                                     ("aorta", "stomach"), ("duodenum", "kidney_right"),
                                     ("duodenum", "adrenal_gland_right")]}
    lab = {k: rgb2lab(np.array(v, float).reshape(1, 1, 3) / 255)[0, 0] for k, v in ORGAN_COLOURS.items()}
    for a, b in (tuple(p) for p in pairs):
        assert float(np.linalg.norm(lab[a] - lab[b])) >= 25.0, (a, b)
