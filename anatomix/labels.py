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
from typing import Mapping

from anatomix.errors import AnatomixError

__all__ = [
    "ABDOMEN_13",
    "ALIASES",
    "PRESETS",
    "VOCABULARY",
    "UnknownOrganError",
    "canonical_organ",
    "closest_organs",
    "mirror_organ",
    "organ_side",
    "preset",
]

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


def _normalise(name: str) -> str:
    """Lower-case, spaces/hyphens to underscores: 'Right Kidney' -> 'right_kidney'."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def closest_organs(name: str, n: int = 3) -> list[str]:
    """Vocabulary names closest to ``name`` (for 'did you mean' messages)."""
    candidates = sorted(VOCABULARY | set(ALIASES))
    found = difflib.get_close_matches(_normalise(name), candidates, n=n * 2, cutoff=0.5)
    out: list[str] = []
    for c in found:
        c = ALIASES.get(c, c)
        if c not in out:
            out.append(c)
    return out[:n]


def canonical_organ(name: str) -> str:
    """Map a dataset's organ name onto the anatomix vocabulary.

    Args:
        name: any spelling ("Gall Bladder", "postcava", "left_kidney", "liver").

    Returns:
        The snake_case vocabulary name.

    Raises:
        UnknownOrganError: the name is unknown; the message lists the closest known names.
    """
    key = _normalise(name)
    if key in VOCABULARY:
        return key
    if key in ALIASES:
        return ALIASES[key]
    # TotalSegmentator spells vertebrae with a capital letter (vertebrae_L1).
    for v in VOCABULARY:
        if v.lower() == key:
            return v
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


def mirror_organ(name: str) -> str | None:
    """The contralateral organ (kidney_left -> kidney_right), or None if not lateral."""
    side = organ_side(name)
    if side is None:
        return None
    other = "right" if side == "left" else "left"
    return "_".join(other if p == side else p for p in name.split("_"))


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
