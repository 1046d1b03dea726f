import pytest

from anatomix.labels import (
    ABDOMEN_13, PRESETS, VOCABULARY, UnknownOrganError, canonical_organ, mirror_organ, organ_side, preset,
)


def test_aliases_map_onto_vocabulary():
    assert canonical_organ("Gall Bladder") == "gallbladder"
    assert canonical_organ("postcava") == "inferior_vena_cava"
    assert canonical_organ("IVC") == "inferior_vena_cava"
    assert canonical_organ("left_kidney") == "kidney_left"
    assert canonical_organ("portal_vein_and_splenic_vein") == "portal_splenic_vein"
    assert canonical_organ("vertebrae_l1") == "vertebrae_L1"


def test_unknown_name_lists_closest():
    with pytest.raises(UnknownOrganError, match="closest known: .*kidney_left"):
        canonical_organ("kidny_left")


def test_presets_are_in_vocabulary():
    for name, table in PRESETS.items():
        assert set(table.values()) <= VOCABULARY, name
    assert preset("FLARE22")[13] == "kidney_left"
    assert preset("btcv")[10] == "portal_splenic_vein"
    assert preset("word")[12] == "adrenal_gland"
    assert len(preset("totalsegmentator")) == 117
    assert set(ABDOMEN_13) <= VOCABULARY
    with pytest.raises(KeyError, match="btcv"):
        preset("nope")


def test_sides():
    assert organ_side("adrenal_gland_left") == "left"
    assert organ_side("liver") is None
    assert mirror_organ("kidney_right") == "kidney_left"
    assert mirror_organ("rib_left_3") == "rib_right_3"
