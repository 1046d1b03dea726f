"""Synthesis configuration: the pydantic models of configs/*.yaml (leaf module: imports nothing of
the pipeline, so every stage and the writer can share them).

Relation rules and their defaults are NOT here: they belong to the organ graph
(:mod:`anatomix.graph`); these settings say how hard placement searches, not what anatomy is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["PlacementConfig"]


class PlacementConfig(BaseModel):
    """Placement settings (section ``placement`` of configs/synth.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["structured", "random"] = "structured"
    candidates: int = Field(16, ge=1, le=256, description="candidate poses per shape draw (K)")
    shape_attempts: int = Field(6, ge=1, le=50, description="shape draws before dropping an organ")
    score_spacing_mm: float = Field(4.0, gt=0.5, le=10.0, description="lattice spacing for scoring, mm")
    body_scale: tuple[float, float] = (0.92, 1.08)
    interpolation_probability: float = Field(0.8, ge=0.0, le=1.0)
    truncated_weight: float = Field(0.05, ge=0.0, le=1.0,
                                    description="draw weight of a truncated shape relative to a complete one")
    elastic_amplitude_mm: float = Field(3.0, ge=0.0, le=15.0)
    elastic_wavelength_mm: tuple[float, float] = (70.0, 160.0)
    elastic_terms: int = Field(3, ge=0, le=8)
    anisotropy: float = Field(0.05, ge=0.0, le=0.3, description="per-axis scale jitter around the organ scale")
    neighbour_spread: float = Field(0.4, gt=0.0, le=2.0,
                                    description="candidate spread around the contact partners' prediction, "
                                                "in units of the anchor std")
    position_spread: float = Field(1.0, gt=0.0, le=5.0, description="candidate spread in units of the anchor std")
    anchor_source: Literal["shape", "graph"] = Field(
        "shape", description="shape: a bank shape's own body-frame centroid is its anchor (subjects whose "
                             "frame is exact), the graph anchor otherwise; graph: always the graph anchor")
    subject_coherence: float = Field(
        0.5, ge=0.0, le=1.0, description="probability that a shape comes from the subject of its placed parent "
                                         "or contact partners (always on retries)")
    contact_weight: float = Field(1.0, ge=0.0)
    anchor_weight: float = Field(0.3, ge=0.0)
    fallback: bool = Field(True, description="after the shape draws, one more try with the bank shape "
                                             "unaltered, 4x the candidates, all pushed out of overlaps")
    repair: int = Field(2, ge=0, le=10, description="blockers lifted out and placed again when a required "
                                                   "organ fits nowhere (0: off)")
    push_candidates: int = Field(8, ge=0, le=64, description="rejected candidates pushed out of overlaps")
    push_keep: int = Field(2, ge=1, le=64, description="stop pushing once this many pushed candidates are valid")
    push_steps: int = Field(6, ge=0, le=20, description="lattice steps of one push-out")
    contact_steps: int = Field(12, ge=0, le=50, description="lattice steps towards unmet contacts")
    lattice_margin_mm: float = Field(9.0, ge=0.0, le=50.0)
    joint_model: bool = Field(True, description="draw anchors from the graph's anatomy_model (when it has "
                                                "one) conditioned on the organs already placed")
    joint_min_std_mm: float = Field(4.0, ge=0.0, le=50.0,
                                    description="floor of the conditional / complex anchor std, mm")
    complexes: bool = Field(False, description="place organ complexes (anatomix.complexes defaults) as units "
                                               "from one bank subject's relative geometry")

    @field_validator("body_scale", "elastic_wavelength_mm")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (0 < v[0] <= v[1]):
            raise ValueError(f"a range (min, max) with 0 < min <= max, found {v}")
        return v
