"""The Python API for notebooks and scripts: a thin facade over the library.

``from anatomix import ShapeBank, OrganGraph, Synthesizer``. :class:`Synthesizer` wraps
:func:`anatomix.synth.load_synth_config` / :func:`anatomix.synth.build_generator` and the name
resolution of :mod:`anatomix.resources` (``"abdomen"``, ``"default"``, ``"fdif"`` or paths). Its
cases are those ``anatomix synth`` writes with the same seed, in the written label values: the
label map is the bytes of ``labelsTr/<case>.nii.gz``'s array, :meth:`Synthesizer.label_names` is
dataset.json's table, and :func:`anatomix.sample.image_to_write` of a sample is the array of
``imagesTr/<case>_0000.nii.gz`` (int16 HU for CT-like cases).

Example:
    >>> import numpy as np
    >>> from anatomix import Synthesizer
    >>> synth = Synthesizer("abdomen", seed=0)          # the shipped graph and the embedded bank
    >>> sample = synth.sample(0)                         # deterministic in (seed, index)
    >>> sample.image.shape == sample.label.shape, sample.image.dtype.name, sample.label.dtype.name
    (True, 'float32', 'uint8')
    >>> sample.record["index"], sample.spacing_mm
    (0, (1.5, 1.5, 2.0))
    >>> bool((sample.label == 0).any()) and synth.label_names()[1]
    'spleen'
    >>> set(map(int, np.unique(sample.label))) <= {0, *synth.label_names()}   # the written values
    True
    >>> np.array_equal(Synthesizer("abdomen", seed=0).sample(0).label, sample.label)
    True
    >>> image, label = synth.tensors(0)                  # torch, channels first: (1, x, y, z)
    >>> tuple(image.shape) == (1, *sample.image.shape), label.dtype
    (True, torch.int64)
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["Synthesizer", "synth_config"]


def synth_config(*, graph: str | os.PathLike[str] | None = None, config: str | os.PathLike[str] | None = None,
                 bank: str | os.PathLike[str] | None = None, fov: str | None = None,
                 strict: bool | None = None) -> Any:
    """The validated synthesis config for a graph and/or a config, each a path or a shipped name.

    Args:
        graph: organ graph (``"abdomen"`` or a YAML path): structure-aware synthesis.
        config: synthesis YAML (``"synth"``, ``"fdif"`` or a path); its own ``graph``/``bank``
            paths resolve relative to the file.
        bank: shape bank folder or ``"default"`` (with ``graph``); default: the embedded bank.
        fov: ``"whole"`` or ``"window"`` (with ``graph``).
        strict: fail when the bank lacks a graph organ (with ``graph``).

    Raises:
        ConfigError / AnatomixError: unknown name or file, invalid config.
    """
    from anatomix.errors import ConfigError
    from anatomix.resources import resolve, resolve_synth_paths
    from anatomix.config import load_synth_config

    if graph is None and config is None:
        raise ConfigError("give a graph (e.g. 'abdomen') or a config (e.g. 'fdif'); "
                          "`anatomix resources` lists the shipped ones")
    config_path = resolve("config", config) if config is not None else None
    if graph is not None:
        from anatomix.config import anatomy_config

        cfg = anatomy_config(config_path, graph=str(resolve("graph", graph)),
                             bank=str(resolve("bank", bank)) if bank is not None else None,
                             fov=fov, strict=strict)
    else:
        if bank is not None or fov is not None or strict:
            raise ConfigError("bank, fov and strict go with a graph (structure-aware synthesis)")
        cfg = load_synth_config(config_path)  # type: ignore[arg-type]
    if getattr(cfg, "mode", None) == "anatomy":
        base = config_path.parent if config_path is not None else None
        fixed = resolve_synth_paths({"graph": cfg.graph, "bank": cfg.bank}, base, where=str(config_path))
        cfg = cfg.model_copy(update=fixed)
    return cfg


class Synthesizer:
    """Synthetic cases in memory: ``Synthesizer("abdomen").sample(i)``.

    Args:
        graph: organ graph, a shipped name (``"abdomen"``) or a YAML path.
        config: synthesis config, a shipped name (``"synth"``, ``"fdif"``) or a path; alone it
            selects its own mode (``Synthesizer(config="fdif")``).
        bank: shape bank folder or ``"default"`` (the embedded bank).
        seed: run seed; case ``i`` of seed ``s`` is case ``i`` of ``anatomix synth --seed s``.
        device: torch device of the generation work.
        fov: ``"whole"`` (the whole abdomen) or ``"window"`` (the config's fixed grid).
    """

    def __init__(self, graph: str | os.PathLike[str] | None = None, *,
                 config: str | os.PathLike[str] | None = None, bank: str | os.PathLike[str] | None = None,
                 seed: int = 0, device: str = "cpu", fov: str | None = None) -> None:
        from anatomix.output_labels import output_label_lut
        from anatomix.synth import build_generator

        self.config = synth_config(graph=graph, config=config, bank=bank, fov=fov)
        self.seed = int(seed)
        self.generator = build_generator(self.config, seed=self.seed, device=device)
        self._lut = output_label_lut(self.generator)  # generator values -> written values

    def sample(self, index: int) -> Any:
        """Case ``index``: an :class:`anatomix.synth.Sample` with ``image`` (float32, (x, y, z),
        what training sees), ``label`` (uint8, same shape, the written values of
        :meth:`label_names`), ``image_hu`` (int16, CT-like cases: the written image),
        ``spacing_mm``, ``origin_mm`` and the replayable ``record`` (in the generator's own label
        values, as ``self.generator.sample`` returns them)."""
        import dataclasses

        s = self.generator.sample(int(index))
        return s if self._lut is None else dataclasses.replace(s, label=self._lut[s.label])

    def tensors(self, index: int) -> tuple[Any, Any]:
        """Case ``index`` as torch tensors, channels first: image (1, x, y, z) float32, label (1, x, y, z) int64."""
        import torch

        s = self.sample(index)
        return torch.from_numpy(s.image)[None], torch.from_numpy(s.label.astype("int64"))[None]

    def label_names(self) -> dict[int, str]:
        """Label value -> organ (or class) name: the classes the cases can hold, consecutive from 1,
        as in the written files' dataset.json (graph organs without a bank shape left out)."""
        from anatomix.output_labels import written_label_names

        return written_label_names(self.generator)

    def __repr__(self) -> str:
        return f"Synthesizer(mode={getattr(self.config, 'mode', None)!r}, seed={self.seed})"
