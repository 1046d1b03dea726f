"""Draw docs/context_preview.png: synthetic axial slices beside a real CT slice, same CT window.

    PYTHONPATH=. python docs/make_context_preview.py

Synthetic cases: the default structure-aware stream (context anatomy + CT tissue model), one
CT-like case per column at 1.5 mm, axial slice through the kidneys; the last column is the real
TotalSegmentator CT fixture (Apache-2.0) at its kidney level, both shown in the window -175..250 HU.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from anatomix.anatomy import AnatomyGenerator, AnatomySynthConfig
    from anatomix.io import read_image, read_label_map
    from anatomix.labels import preset

    cfg = AnatomySynthConfig.model_validate({
        "graph": str(REPO / "graphs" / "abdomen.yaml"),
        "grid": {"shape": [240, 200, 24], "spacing_mm": [1.5, 1.5, 3.0], "foreground_bias": 1.0,
                 "window_jitter_mm": 0.0},
        "appearance": {"ct_probability": 1.0, "lesion_probability": 0.0, "distractors": [0, 0],
                       "gamma": [1.0, 1.0], "bias_field": 0.05}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = AnatomyGenerator(cfg, seed=7)
    synth = []
    index = 0
    while len(synth) < 3 and index < 40:
        s = gen.sample(index)
        index += 1
        kid = np.argwhere(np.isin(s.label, [2, 3]))
        if len(kid) < 50:
            continue
        z = int(np.median(kid[:, 2]))
        synth.append((s.image[:, :, z], s.record["appearance"]["phase"]))
    ct = read_image(REPO / "tests" / "fixtures" / "totalsegmentator" / "example_ct.nii.gz")
    lab = read_label_map(REPO / "tests" / "fixtures" / "totalsegmentator" / "example_seg_fast_force_split.nii.gz")
    kid_values = [k for k, n in preset("totalsegmentator").items() if n in ("kidney_left", "kidney_right")]
    z = int(np.median(np.argwhere(np.isin(lab.array, kid_values))[:, 2]))
    real = np.clip((ct.array[:, :, z] + 175.0) / 425.0, 0, 1)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    for ax, (img, phase) in zip(axes, synth):
        ax.imshow(img.T[::-1, ::-1], cmap="gray", vmin=0, vmax=1, aspect=1.0)
        ax.set_title(f"anatomix (CT-like, {phase})")
    axes[3].imshow(real.T[::-1, ::-1], cmap="gray", vmin=0, vmax=1,
                   aspect=ct.spacing_mm[1] / ct.spacing_mm[0])
    axes[3].set_title("real CT (TotalSegmentator example)")
    for ax in axes:
        ax.axis("off")
    fig.suptitle("axial slices through the kidneys, window -175..250 HU", y=0.99)
    fig.tight_layout()
    fig.savefig(REPO / "docs" / "context_preview.png", dpi=80)


if __name__ == "__main__":
    main()
