"""Counter-based randomness: (seed, sample index) decides a sample.

Every random function in anatomix takes its generator as an argument. A sample's generators
are derived from ``SeedSequence(seed, spawn_key=(index,))`` rather than ``seed + index``, so
run 0 sample 1 never equals run 1 sample 0, and a sample is the same whatever the worker
count, shard or order in which it is produced.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["sample_seed_sequence", "sample_rng", "child_rng", "torch_generator"]


def sample_seed_sequence(seed: int, index: int) -> np.random.SeedSequence:
    """The seed sequence of sample ``index`` of run ``seed``."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    return np.random.SeedSequence(seed, spawn_key=(index,))


def sample_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """A numpy Generator for sample ``index`` of run ``seed``.

    ``stream`` separates independent purposes within one sample (placement, appearance, ...),
    so adding draws to one stage never shifts the draws of another.
    """
    ss = np.random.SeedSequence(seed, spawn_key=(index, stream))
    return np.random.Generator(np.random.PCG64(ss))


def child_rng(rng: np.random.Generator) -> np.random.Generator:
    """An independent generator drawn from ``rng`` (consumes one draw of it)."""
    return np.random.Generator(np.random.PCG64(rng.integers(0, 2**63 - 1, dtype=np.int64)))


def torch_generator(rng: np.random.Generator, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator seeded from ``rng`` (consumes one draw of it)."""
    g = torch.Generator(device=device)
    g.manual_seed(int(rng.integers(0, 2**63 - 1, dtype=np.int64)))
    return g
