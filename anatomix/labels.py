"""Organ vocabulary and label presets.

One snake_case vocabulary names every structure in anatomix: YAML graphs, shape-bank folders,
label presets and output ``dataset.json`` files all use the same strings, so banks built from
different datasets combine. The vocabulary follows TotalSegmentator's ``total`` task (the
largest public label set), with a few renames where the abdominal-benchmark names are clearer
(``portal_splenic_vein``) and a few structures that only other datasets label (WORD's merged
``adrenal_gland``, ``intestine``, ``rectum``, femoral heads; MSD lesions).
"""

from __future__ import annotations

import difflib
import re
from types import MappingProxyType
from typing import Iterable, Mapping

from anatomix.errors import AnatomixError

__all__ = [
    "ABDOMEN_13",
    "ALIASES",
    "HOLLOW_ORGANS",
    "MIDLINE_REFERENCES",
    "MIDLINE_SIDE",
    "PRESETS",
    "VOCABULARY",
    "UnknownOrganError",
    "body_side",
    "canonical_organ",
    "closest_organs",
    "mirror_organ",
    "normalise_name",
    "organ_side",
    "organs_option",
    "lateral_pairs",
    "preset",
    "lenient_organ",
]

#: Hollow viscera: their walls yield to a neighbour, so placement's contact closing may bulge them
#: further (graph ``defaults.hollow_bulge_mm``) than solid organs (``defaults.solid_bulge_mm``).
HOLLOW_ORGANS: frozenset[str] = frozenset({
    "esophagus", "stomach", "duodenum", "small_bowel", "colon", "intestine", "rectum", "gallbladder",
    "urinary_bladder",
})

#: Organs that lie on one side of the body midline although their names carry no side (normal
#: adult anatomy, checked on FLARE22); with the side words of their names (:func:`organ_side`),
#: :func:`body_side` gives the side of every lateral structure.
MIDLINE_SIDE: Mapping[str, str] = MappingProxyType({
    "liver": "right",
    "gallbladder": "right",
    "inferior_vena_cava": "right",
    "spleen": "left",
    "stomach": "left",
})

#: Single structures on (or straddling) the body midline that laterality is judged against:
#: ``anatomix evaluate`` finds the midline from the spine, else the aorta and the inferior vena
#: cava; ``graph learn`` orders every lateral organ against each of these it holds, so placement
#: keeps it on its side. (Single vertebrae are left out: one relation per organ and vertebra
#: would multiply the graph for no new information once the spinal cord or sacrum is there.)
MIDLINE_REFERENCES: tuple[str, ...] = ("spinal_cord", "sacrum", "aorta", "inferior_vena_cava")

# TotalSegmentator `total` (v2, 117 classes), in label order; the order is also the preset.
_TOTALSEGMENTATOR_TOTAL: tuple[str, ...] = (
    "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas",
    "adrenal_gland_right", "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left",
    "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right", "esophagus",
    "trachea", "thyroid_gland", "small_bowel", "duodenum", "colon", "urinary_bladder", "prostate",
    "kidney_cyst_left", "kidney_cyst_right", "sacrum", "vertebrae_S1", "vertebrae_L5",
    "vertebrae_L4", "vertebrae_L3", "vertebrae_L2", "vertebrae_L1", "vertebrae_T12",
    "vertebrae_T11", "vertebrae_T10", "vertebrae_T9", "vertebrae_T8", "vertebrae_T7",
    "vertebrae_T6", "vertebrae_T5", "vertebrae_T4", "vertebrae_T3", "vertebrae_T2",
    "vertebrae_T1", "vertebrae_C7", "vertebrae_C6", "vertebrae_C5", "vertebrae_C4",
    "vertebrae_C3", "vertebrae_C2", "vertebrae_C1", "heart", "aorta", "pulmonary_vein",
    "brachiocephalic_trunk", "subclavian_artery_right", "subclavian_artery_left",
    "common_carotid_artery_right", "common_carotid_artery_left", "brachiocephalic_vein_left",
    "brachiocephalic_vein_right", "atrial_appendage_left", "superior_vena_cava",
    "inferior_vena_cava", "portal_splenic_vein", "iliac_artery_left", "iliac_artery_right",
    "iliac_vena_left", "iliac_vena_right", "humerus_left", "humerus_right", "scapula_left",
    "scapula_right", "clavicula_left", "clavicula_right", "femur_left", "femur_right", "hip_left",
    "hip_right", "spinal_cord", "gluteus_maximus_left", "gluteus_maximus_right",
    "gluteus_medius_left", "gluteus_medius_right", "gluteus_minimus_left",
    "gluteus_minimus_right", "autochthon_left", "autochthon_right", "iliopsoas_left",
    "iliopsoas_right", "brain", "skull", "rib_left_1", "rib_left_2", "rib_left_3", "rib_left_4",
    "rib_left_5", "rib_left_6", "rib_left_7", "rib_left_8", "rib_left_9", "rib_left_10",
    "rib_left_11", "rib_left_12", "rib_right_1", "rib_right_2", "rib_right_3", "rib_right_4",
    "rib_right_5", "rib_right_6", "rib_right_7", "rib_right_8", "rib_right_9", "rib_right_10",
    "rib_right_11", "rib_right_12", "sternum", "costal_cartilages",
)

# Structures labelled by other datasets (or by TotalSegmentator's MR task) but not by `total`.
_EXTRA: tuple[str, ...] = (
    "adrenal_gland",  # WORD labels both glands as one; kept as its own organ (see ALIASES note)
    "intestine", "rectum", "femur_head_left", "femur_head_right", "prostate_uterus",
    "lung_left", "lung_right", "vertebrae", "intervertebral_discs",
    "liver_tumor", "pancreas_tumor", "kidney_tumor", "lesion",
)

VOCABULARY: frozenset[str] = frozenset(_TOTALSEGMENTATOR_TOTAL + _EXTRA)

# The 13 organs BTCV and FLARE22 share (FLARE has duodenum, BTCV portal/splenic vein).
ABDOMEN_13: tuple[str, ...] = (
    "liver", "spleen", "kidney_right", "kidney_left", "gallbladder", "stomach", "pancreas",
    "duodenum", "esophagus", "aorta", "inferior_vena_cava", "adrenal_gland_right",
    "adrenal_gland_left",
)

# Other datasets' spellings -> vocabulary. Keys are normalised (see _normalise) before lookup.
ALIASES: Mapping[str, str] = MappingProxyType({
    "gall_bladder": "gallbladder",
    "postcava": "inferior_vena_cava",
    "ivc": "inferior_vena_cava",
    "vena_cava_inferior": "inferior_vena_cava",
    "inferior_vena_cava_postcava": "inferior_vena_cava",
    "left_kidney": "kidney_left",
    "right_kidney": "kidney_right",
    "kidney_l": "kidney_left",
    "kidney_r": "kidney_right",
    "left_adrenal_gland": "adrenal_gland_left",
    "right_adrenal_gland": "adrenal_gland_right",
    "adrenal_left": "adrenal_gland_left",
    "adrenal_right": "adrenal_gland_right",
    "left_adrenal": "adrenal_gland_left",
    "right_adrenal": "adrenal_gland_right",
    # WORD's single `adrenal` label covers both glands; anatomix keeps it as its own organ
    # rather than guessing a split, so it never mixes with the sided glands of other banks.
    "adrenal": "adrenal_gland",
    "adrenal_glands": "adrenal_gland",
    "portal_vein_and_splenic_vein": "portal_splenic_vein",
    "portal_and_splenic_vein": "portal_splenic_vein",
    "portal_vein": "portal_splenic_vein",
    "splenic_vein": "portal_splenic_vein",
    "bladder": "urinary_bladder",
    "oesophagus": "esophagus",
    "small_intestine": "small_bowel",
    "left_femoral_head": "femur_head_left",
    "right_femoral_head": "femur_head_right",
    "femoral_head_left": "femur_head_left",
    "femoral_head_right": "femur_head_right",
    "prostate/uterus": "prostate_uterus",
    "prostate_or_uterus": "prostate_uterus",
    "uterus": "prostate_uterus",
    "liver_tumour": "liver_tumor",
    "pancreas_tumour": "pancreas_tumor",
    "tumour": "lesion",
    "tumor": "lesion",
})


class UnknownOrganError(AnatomixError):
    """An organ name that is neither in the vocabulary nor a known alias."""


def normalise_name(name: str) -> str:
    """Lower-case; spaces, hyphens, commas, dots and brackets to single underscores:
    'Right Kidney' -> 'right_kidney', 'Kidney (left)' -> 'kidney_left', 'lung, right' -> 'lung_right'."""
    return re.sub(r"[\s\-,.;:()\[\]]+", "_", name.strip().lower()).strip("_")


_SIDE_WORDS = {"left": "left", "right": "right", "l": "left", "r": "right", "lt": "left", "rt": "right"}


def _side_last(key: str) -> str | None:
    """A normalised name with its side word moved to the end, the vocabulary's order:
    'right_lung' -> 'lung_right' (3D Slicer, SNOMED terms), 'left_adrenal_gland' ->
    'adrenal_gland_left'. None when the name has no side word or only one."""
    parts = key.split("_")
    sides = [i for i, p in enumerate(parts) if p in ("left", "right")]
    if not sides:  # abbreviations only at an end: 'l_kidney', 'kidney_r'
        sides = [i for i in (0, len(parts) - 1) if parts[i] in _SIDE_WORDS]
    if len(sides) != 1 or len(parts) < 2:
        return None
    i = sides[0]
    side = _SIDE_WORDS[parts[i]]
    rest = parts[:i] + parts[i + 1:]
    return "_".join(rest + [side])


def closest_organs(name: str, n: int = 3) -> list[str]:
    """Vocabulary names closest to ``name`` (for 'did you mean' messages)."""
    candidates = sorted(VOCABULARY | set(ALIASES))
    key = normalise_name(name)
    key = _side_last(key) or key
    found = difflib.get_close_matches(key, candidates, n=n * 2, cutoff=0.5)
    out: list[str] = []
    for c in found:
        c = ALIASES.get(c, c)
        if c not in out:
            out.append(c)
    return out[:n]


def organs_option(organs: "Iterable[str]") -> str:
    """A ``--organs`` value that selects ``organs`` and that ``canonical_organ`` accepts back:
    ``organs_option(["spleen", "Left Kidney"]) == "--organs kidney_left,spleen"`` (sorted, vocabulary
    names; names it cannot map are left out; ``--organs <organ,...>`` when none is left)."""
    names: set[str] = set()
    for o in organs:
        try:
            names.add(canonical_organ(o))
        except UnknownOrganError:
            continue
    return f"--organs {','.join(sorted(names))}" if names else "--organs <organ,...>"


def canonical_organ(name: str) -> str:
    """Map a dataset's organ name onto the anatomix vocabulary.

    Args:
        name: any spelling ("Gall Bladder", "postcava", "left_kidney", "liver").

    Returns:
        The snake_case vocabulary name.

    Raises:
        UnknownOrganError: the name is unknown; the message lists the closest known names.
    """
    key = normalise_name(name)
    if key in VOCABULARY:
        return key
    if key in ALIASES:
        return ALIASES[key]
    # TotalSegmentator spells vertebrae with a capital letter (vertebrae_L1).
    for v in VOCABULARY:
        if v.lower() == key:
            return v
    moved = _side_last(key)  # 'right lung' (Slicer) -> lung_right
    if moved is not None:
        if moved in VOCABULARY:
            return moved
        if moved in ALIASES:
            return ALIASES[moved]
    close = closest_organs(name)
    hint = f"closest known: {', '.join(close)}" if close else "no close match"
    raise UnknownOrganError(
        f"unknown organ name {name!r} ({hint}); use a vocabulary name or add a label file "
        "mapping label values to known names (see `anatomix.labels.VOCABULARY`)"
    )


def organ_side(name: str) -> str | None:
    """'left', 'right' or None for an organ that is not lateral."""
    parts = name.split("_")
    if "left" in parts:
        return "left"
    if "right" in parts:
        return "right"
    return None


def body_side(name: str) -> str | None:
    """The side of the body midline an organ lies on: its name's side word (:func:`organ_side`),
    else :data:`MIDLINE_SIDE` (``liver`` -> ``'right'``), else None."""
    return organ_side(name) or MIDLINE_SIDE.get(name)


def mirror_organ(name: str) -> str | None:
    """The contralateral organ (kidney_left -> kidney_right), or None if not lateral."""
    side = organ_side(name)
    if side is None:
        return None
    other = "right" if side == "left" else "left"
    return "_".join(other if p == side else p for p in name.split("_"))


def lateral_pairs(names: "Iterable[str]") -> list[tuple[str, str]]:
    """The (left, right) pairs among ``names``: every organ whose mirror (:func:`mirror_organ`) is
    also present, e.g. ``[("kidney_left", "kidney_right")]`` for spleen, kidney_left, kidney_right."""
    present = set(names)
    return sorted((n, m) for n in present if organ_side(n) == "left"
                  and (m := mirror_organ(n)) is not None and m in present)


def _table(names: list[str]) -> Mapping[int, str]:
    return MappingProxyType({i + 1: canonical_organ(n) for i, n in enumerate(names)})


# label value -> vocabulary name; values from each dataset's documentation (../shared/data/README.md)
PRESETS: Mapping[str, Mapping[int, str]] = MappingProxyType({
    "btcv": _table([
        "spleen", "kidney_right", "kidney_left", "gallbladder", "esophagus", "liver", "stomach",
        "aorta", "inferior_vena_cava", "portal_splenic_vein", "pancreas", "adrenal_gland_right",
        "adrenal_gland_left",
    ]),
    "amos": _table([
        "spleen", "kidney_right", "kidney_left", "gallbladder", "esophagus", "liver", "stomach",
        "aorta", "inferior_vena_cava", "pancreas", "adrenal_gland_right", "adrenal_gland_left",
        "duodenum", "urinary_bladder", "prostate_uterus",
    ]),
    "flare22": _table([
        "liver", "kidney_right", "spleen", "pancreas", "aorta", "inferior_vena_cava",
        "adrenal_gland_right", "adrenal_gland_left", "gallbladder", "esophagus", "stomach",
        "duodenum", "kidney_left",
    ]),
    "word": _table([
        "liver", "spleen", "kidney_left", "kidney_right", "stomach", "gallbladder", "esophagus",
        "pancreas", "duodenum", "colon", "intestine", "adrenal_gland", "rectum",
        "urinary_bladder", "femur_head_left", "femur_head_right",
    ]),
    "totalsegmentator": _table(list(_TOTALSEGMENTATOR_TOTAL)),
})


def preset(name: str) -> Mapping[int, str]:
    """The label table (value -> organ) of a named preset.

    Raises:
        KeyError: unknown preset; the message lists the presets.
    """
    key = name.strip().lower()
    if key not in PRESETS:
        raise KeyError(
            f"unknown label preset {name!r}; expected one of {', '.join(sorted(PRESETS))}, "
            "or a JSON/YAML file mapping label value to organ name"
        )
    return PRESETS[key]


def lenient_organ(name: str) -> str:
    """``canonical_organ(name)``, or the normalised spelling of a name outside the vocabulary.

    For names a file embeds or a user's dataset defines (``"Tumor 1"`` -> ``"tumor_1"``), where an
    unknown name is data, not a mistake.
    """
    try:
        return canonical_organ(name)
    except UnknownOrganError:
        return normalise_name(name)
