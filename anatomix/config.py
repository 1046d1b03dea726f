"""Synthesis configuration: the pydantic models of configs/*.yaml and their loader.

A leaf module of the pipeline: every stage (placement, rendering, appearance), the generators
and the dataset writer read their settings from here, and nothing here imports them. A config
file is one :data:`SynthConfig`, a union discriminated on ``mode`` (``fdif`` or ``anatomy``).

Relation rules and their defaults are NOT here: they belong to the organ graph
(:mod:`anatomix.graph`); these settings say how hard placement searches and how images look,
not what anatomy is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from anatomix.context import ContextConfig

from anatomix.errors import ConfigError, validation_problems
from anatomix.grid import Grid
from anatomix.safeload import check_yaml_text, excerpt, read_text_bounded
from anatomix.sdf.displacements import DISPLACEMENT_NAMES
from anatomix.sdf.mappers import MAPPER_NAMES
from anatomix.sdf.primitives import CLASS_NAMES

__all__ = [
    "MODES",
    "PHASES",
    "AnatomySynthConfig",
    "AppearanceConfig",
    "FdifSynthConfig",
    "GridConfig",
    "PlacementConfig",
    "SynthConfig",
    "anatomy_config",
    "config_problems",
    "load_synth_config",
    "validate_synth_config",
]

MODES = ("fdif", "anatomy")
PHASES = ("native", "arterial", "portal", "delayed")


# ---- structure-aware synthesis (mode: anatomy) ----------------------------------------


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
    # 0.6: candidates drawn at the full conditional spread, then moved by push-out, contact
    # refinement and closing, spread organs ~1.3x wider than real subjects (five FLARE22 folds);
    # retries widen again so that an organ the first draw could not fit still finds room
    position_spread: float = Field(0.6, gt=0.0, le=5.0,
                                   description="candidate spread of an organ's first draw, in units of the anchor std")
    retry_position_spread: float = Field(1.0, gt=0.0, le=5.0,
                                         description="candidate spread of the draws after the first")
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
    contact_closing: bool = Field(True, description="after placement, close each unmet contact with local "
                                                    "surface bulges (hollow organs yield most; graph "
                                                    "max_bulge_mm) where no avoid is broken")
    bulge_radius_mm: float = Field(10.0, ge=2.0, le=50.0,
                                   description="smallest radius of a contact-closing bulge, mm")

    @field_validator("body_scale", "elastic_wavelength_mm")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (0 < v[0] <= v[1]):
            raise ValueError(f"a range (min, max) with 0 < min <= max, found {v}")
        return v


class AppearanceConfig(BaseModel):
    """Appearance settings (section ``appearance`` of configs/synth.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["fdif", "contour"] = "fdif"
    texture: Literal["fdif", "none"] = "fdif"
    ct_probability: float = Field(0.5, ge=0.0, le=1.0, description="share of cases with the CT-like prior")
    phases: tuple[Literal["native", "arterial", "portal", "delayed"], ...] = PHASES  # type: ignore[assignment]  # PHASES holds exactly these
    random_mean_hu: tuple[float, float] = (-150.0, 250.0)
    std_hu: tuple[float, float] = (3.0, 25.0)
    ct_jitter_hu: float = Field(15.0, ge=0.0)
    texture_probability: float = Field(0.8, ge=0.0, le=1.0)
    texture_amplitude_hu: tuple[float, float] = (5.0, 40.0)
    texture_scale: tuple[float, float] = (0.2, 1.0)
    distractors: tuple[int, int] = (0, 8)
    distractor_amplitude_hu: tuple[float, float] = (-80.0, 120.0)
    lesion_probability: float = Field(0.3, ge=0.0, le=1.0)
    lesion_hosts: tuple[str, ...] = ("liver", "kidney_left", "kidney_right", "spleen", "pancreas")
    lesion_radius_mm: tuple[float, float] = (4.0, 15.0)
    lesion_contrast_hu: tuple[float, float] = (-60.0, 40.0)
    max_lesions: int = Field(3, ge=0, le=20)
    body_margin_mm: tuple[float, float] = (15.0, 45.0)
    bias_field: float = Field(0.25, ge=0.0, le=1.0, description="max relative bias amplitude")
    blur_sigma_mm: tuple[float, float] = (0.0, 1.0)
    slice_thickness_mm: tuple[float, float] = (0.0, 4.0)
    noise_std_hu: tuple[float, float] = (0.0, 20.0)
    gamma: tuple[float, float] = (0.7, 1.5)
    window_hu: tuple[float, float] = (-175.0, 250.0)
    contour_thickness_mm: tuple[float, float] = (1.5, 3.0)
    # -- tissue model and domain randomisation (used where a case has context anatomy) --------
    ct_prior: str | None = Field("default", description="learned HU prior JSON (`anatomix appearance "
                                 "learn`); 'default': the shipped one; none: the tissue table only")
    prior_probability: float = Field(0.5, ge=0.0, le=1.0,
                                     description="share of CT cases that use the learned prior's HU")
    mr_probability: float = Field(0.0, ge=0.0, le=1.0,
                                  description="share of non-CT cases with an MR-like tissue contrast "
                                              "(T1 or T2 ordering) instead of random per-label Gaussians")
    invert_probability: float = Field(0.0, ge=0.0, le=1.0, description="share of cases with inverted contrast")
    gmm_components: int = Field(2, ge=1, le=4, description="Gaussians per label in randomised cases")
    noise_correlation_mm: tuple[float, float] = (0.0, 1.5)
    resolution_mm: tuple[float, float] = Field((0.0, 0.0), description="extra low-resolution blur "
                                               "(FWHM, mm) drawn per axis; (0, 0): off")

    @field_validator("random_mean_hu", "std_hu", "texture_amplitude_hu", "texture_scale", "distractors",
                     "distractor_amplitude_hu", "lesion_radius_mm", "lesion_contrast_hu", "body_margin_mm",
                     "blur_sigma_mm", "slice_thickness_mm", "noise_std_hu", "gamma", "window_hu",
                     "contour_thickness_mm", "noise_correlation_mm", "resolution_mm")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"a range (min, max) with min <= max, found {tuple(v)}")
        return v

    @field_validator("window_hu")
    @classmethod
    def _window(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] >= v[1]:
            raise ValueError(f"a window (low, high) with low < high, found {tuple(v)}")
        return v


class GridConfig(BaseModel):
    """Output grid: ``fov: window`` (fixed shape, placed at random with a foreground bias) or
    ``fov: whole`` (the whole abdomen at ``spacing_mm``; the shape follows the scene)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    shape: tuple[int, int, int] = (96, 96, 96)
    spacing_mm: tuple[float, float, float] = (1.5, 1.5, 2.0)
    fov: Literal["whole", "window"] = "window"
    foreground_bias: float = Field(0.8, ge=0.0, le=1.0,
                                   description="share of windows centred near an organ (else anywhere in the scene)")
    window_jitter_mm: float = Field(20.0, ge=0.0)
    whole_margin_mm: float = Field(20.0, ge=0.0)
    whole_common_cut: bool = Field(
        True, description="fov whole: on each side where a placed shape was cut by its source scan's field of "
                          "view, end the grid at the innermost such cut (never inside a complete organ), as one "
                          "scan cuts every tube at one plane")

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(s < 8 or s > 1024 for s in v):
            raise ValueError(f"3 sizes between 8 and 1024, found {tuple(v)}")
        return v

    @field_validator("spacing_mm")
    @classmethod
    def _spacing(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not (0.1 <= s <= 20.0) for s in v):
            raise ValueError(f"3 spacings between 0.1 and 20 mm, found {tuple(v)}")
        return v


class AnatomySynthConfig(BaseModel):
    """Configuration of structure-aware synthesis (``mode: anatomy``; configs/synth.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["anatomy"] = "anatomy"
    graph: str | None = Field(None, description="organ graph YAML (the CLI's --graph)")
    bank: str | None = Field(None, description="shape bank folder; none: the embedded default bank")
    grid: GridConfig = GridConfig()
    placement: PlacementConfig = PlacementConfig()
    appearance: AppearanceConfig = AppearanceConfig()
    context: ContextConfig = ContextConfig()
    strict: bool = Field(False, description="fail (instead of warning and leaving the organ out) when the "
                                            "bank has no shape of a graph organ")
    lesion_label: Literal["own", "host"] = "own"
    lesion_label_value: int | None = Field(None, ge=1, le=255,
                                           description="label of lesions (own); default: largest organ label + 1")
    channel_name: str = Field("CT", min_length=1, description="dataset.json channel name: CT (nnU-Net's CT "
                              "normalisation of the windowed images) or another name (z-score per image)")


# ---- formula-driven synthesis (mode: fdif) --------------------------------------------


def _check_names(values: list[str] | Literal["all"], known: Sequence[str], what: str) -> list[str] | str:
    if values == "all":
        return values
    bad = [v for v in values if v not in known]
    if bad:
        raise ValueError(f"known {what} names (got unknown {', '.join(map(repr, bad))}; "
                         f"known: {', '.join(known)})")
    if len(set(values)) != len(values):
        raise ValueError(f"distinct {what} names (got duplicates)")
    if not values:
        raise ValueError(f"at least one {what} name")
    return values


class FdifSynthConfig(BaseModel):
    """``mode: fdif`` synthesis config (FDIF's paper setting by default).

    Attributes:
        shape: output grid (x, y, z) voxels.
        spacing_mm: voxel size (x, y, z).
        n_objects: [min, max] objects per volume (inclusive; paper: 20).
        classes: primitive class names or ``all`` (109).
        mappers: mapper names or ``all`` (10).
        displacements: displacement names or ``all`` (9).
        displacement_probability: chance an object is displaced (FDIF: 9 of 10).
        randomize_displacement: random orientation and phase per displacement field
            (FDIF: off, the same field in every sample).
        mapper_as_class / displacement_as_class: make mapper / displacement part of the label
            (FDIF's "separate classes" option) instead of an augmentation.
        translation_fraction, shear, rotate: pose draws (FDIF: 0.35, 0.1, on).
        clip: image clipping range; quantize: truncate to integers (FDIF's uint8).
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["fdif"] = "fdif"
    shape: tuple[int, int, int] = (96, 96, 96)
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    n_objects: tuple[int, int] = (20, 20)
    classes: list[str] | Literal["all"] = "all"
    mappers: list[str] | Literal["all"] = "all"
    displacements: list[str] | Literal["all"] = "all"
    displacement_probability: float = Field(0.9, ge=0.0, le=1.0)
    randomize_displacement: bool = True
    mapper_as_class: bool = False
    displacement_as_class: bool = False
    translation_fraction: float = Field(0.35, ge=0.0, le=1.0)
    shear: float = Field(0.1, ge=0.0, lt=0.5)
    rotate: bool = True
    clip: tuple[float, float] = (0.0, 128.0)
    quantize: bool = True

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(n < 4 or n > 1024 for n in v):
            raise ValueError("3 sizes between 4 and 1024 voxels")
        return v

    @field_validator("spacing_mm")
    @classmethod
    def _spacing(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not s > 0 for s in v):
            raise ValueError("3 positive spacings in mm")
        return v

    @field_validator("n_objects")
    @classmethod
    def _n_objects(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= v[0] <= v[1] <= 255:
            raise ValueError("[min, max] with 1 <= min <= max <= 255")
        return v

    @field_validator("clip")
    @classmethod
    def _clip(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError("[low, high] with low < high")
        return v

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: Any) -> Any:
        return _check_names(v, CLASS_NAMES, "class")

    @field_validator("mappers")
    @classmethod
    def _mappers(cls, v: Any) -> Any:
        return _check_names(v, MAPPER_NAMES, "mapper")

    @field_validator("displacements")
    @classmethod
    def _displacements(cls, v: Any) -> Any:
        return _check_names(v, DISPLACEMENT_NAMES, "displacement")

    @model_validator(mode="after")
    def _label_count(self) -> "FdifSynthConfig":
        n = len(self.class_list) * (len(self.mapper_list) if self.mapper_as_class else 1)
        n *= (len(self.displacement_list) + 1) if self.displacement_as_class else 1
        if n > 255:
            raise ValueError(f"at most 255 labels (uint8 label maps); this config makes {n}: "
                             "choose fewer classes or turn off mapper_as_class / displacement_as_class")
        return self

    @property
    def class_list(self) -> list[str]:
        return list(CLASS_NAMES) if self.classes == "all" else list(self.classes)

    @property
    def mapper_list(self) -> list[str]:
        return list(MAPPER_NAMES) if self.mappers == "all" else list(self.mappers)

    @property
    def displacement_list(self) -> list[str]:
        return list(DISPLACEMENT_NAMES) if self.displacements == "all" else list(self.displacements)

    @property
    def grid(self) -> Grid:
        return Grid(tuple(self.shape), tuple(self.spacing_mm))  # type: ignore[arg-type]


# ---- the union and its loader ---------------------------------------------------------

SynthConfig = Annotated[Union[FdifSynthConfig, AnatomySynthConfig], Field(discriminator="mode")]
"""A synthesis config of either mode (pydantic discriminated union on ``mode``)."""

CONFIG_MODELS: dict[str, type[BaseModel]] = {"fdif": FdifSynthConfig, "anatomy": AnatomySynthConfig}


def _describe(value: Any) -> str:
    return excerpt(value, 60)  # bounded: never reprs a whole (alias-expanded) input


def config_problems(error: Any) -> list[str]:
    """One line per problem of a pydantic ValidationError: ``field.path: expected ..., found ...``."""
    return validation_problems(error)


def validate_synth_config(data: Any, source: str = "<config>") -> Any:
    """Validate an already-parsed config mapping with its mode's model.

    Args:
        data: the parsed YAML (a mapping with a ``mode`` key: ``fdif`` or ``anatomy``).
        source: file name used in error messages.

    Returns:
        The mode's pydantic config object (``mode`` attribute tells which).

    Raises:
        ConfigError: listing every problem (file, field path, expected, found).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with a `mode:` key, found {_describe(data)}")
    mode = data.get("mode")
    if mode not in MODES:
        raise ConfigError(
            f"{source}: mode: expected one of {', '.join(MODES)}; found {_describe(mode)}"
        )
    model = CONFIG_MODELS[mode]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = config_problems(exc)
        body = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"{source}: {len(problems)} problem(s) in the {mode} config:\n{body}") from None


def load_synth_config(path: str | os.PathLike[str]) -> Any:
    """Read a synthesis YAML file and validate it with the model of its ``mode``.

    Raises:
        ConfigError: unreadable file, bad YAML, unknown mode or invalid fields (all listed at once).
    """
    p = Path(path)
    try:
        text = read_text_bounded(p, what="config file")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file ({exc.strerror or exc})") from None
    try:
        check_yaml_text(text, str(p))  # size/depth/alias limits before building objects
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return validate_synth_config(data, source=str(p))


def anatomy_config(config_path: str | os.PathLike[str] | None = None, *, graph: str | None = None,
                   bank: str | None = None, fov: str | None = None, strict: bool | None = None
                   ) -> AnatomySynthConfig:
    """The config of ``anatomix synth --graph G [--config C] [--bank B] [--fov F]``.

    Reads ``config_path`` (must be ``mode: anatomy``) or takes the defaults, then applies the
    command-line overrides. Everything is validated here, before any case is written.

    Raises:
        ConfigError / AnatomixError: bad file, wrong mode, bad override.
    """
    if config_path is not None:
        cfg = load_synth_config(config_path)
        if not isinstance(cfg, AnatomySynthConfig):
            raise ConfigError(f"{config_path}: --graph needs a `mode: anatomy` config, found mode "
                              f"{getattr(cfg, 'mode', None)!r}")
    else:
        cfg = AnatomySynthConfig()
    data = cfg.model_dump()
    if graph is not None:
        data["graph"] = str(graph)
    if bank is not None:
        data["bank"] = str(bank)
    if fov is not None:
        if fov not in ("whole", "window"):
            raise ConfigError(f"--fov: expected whole or window; found {fov!r}")
        data["grid"]["fov"] = fov
    if strict is not None:
        data["strict"] = bool(strict)
    return AnatomySynthConfig.model_validate(data)
