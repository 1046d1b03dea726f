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


# ---- load_label_table: the one reader of label tables (bank, evaluate, train) -------------------

def test_load_label_table_sources(tmp_path):
    import json

    from anatomix.label_tables import load_label_table

    assert load_label_table("BTCV") == dict(preset("btcv"))
    yml = tmp_path / "t.yaml"
    yml.write_text("1: Liver\n2: 'Right Kidney'\n")
    assert load_label_table(yml) == {1: "liver", 2: "kidney_right"}
    ds = tmp_path / "dataset.json"
    ds.write_text(json.dumps({"channel_names": {"0": "CT"},
                              "labels": {"background": 0, "spleen": 1, "cyst core": 2, "both": [1, 2]}}))
    assert load_label_table(ds, strict=False) == {1: "spleen", 2: "cyst_core"}
    assert load_label_table({"3": "gall bladder"}) == {3: "gallbladder"}


def test_load_label_table_collects_problems_with_file(tmp_path):
    from anatomix.errors import InputError
    from anatomix.label_tables import load_label_table

    bad = tmp_path / "bad.yaml"
    bad.write_text("x1: liver\n0: spleen\n2: livr\nfoo: [1\n")
    with pytest.raises(InputError) as e:
        load_label_table(bad)
    assert "bad.yaml" in str(e.value) and "unreadable" in str(e.value)
    bad.write_text("x1: 3.5\n0: spleen\n2: livr\n")
    with pytest.raises(InputError) as e:
        load_label_table(bad)
    assert len(e.value.problems) == 3
    assert all(str(bad) in p for p in e.value.problems)
    assert "found 'x1': 3.5" in str(e.value) and "closest known" in str(e.value)
    assert "found 0" in str(e.value)
    with pytest.raises(InputError, match="found neither a preset nor a file"):
        load_label_table(tmp_path / "missing.json", option="source_labels")
    folder = tmp_path / "dir.json"
    folder.mkdir()
    with pytest.raises(InputError, match="dir.json"):
        load_label_table(folder)
    lst = tmp_path / "list.json"
    lst.write_text("[1, 2]")
    with pytest.raises(InputError, match="list.json: expected a mapping .* found list"):
        load_label_table(lst)
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    with pytest.raises(InputError, match="at least one organ label"):
        load_label_table(empty)


def test_load_label_table_lenient_keeps_unknown_names():
    from anatomix.errors import InputError
    from anatomix.label_tables import load_label_table
    from anatomix.labels import lenient_organ

    with pytest.raises(InputError, match="Tumor Core"):
        load_label_table({1: "Tumor Core"})
    assert load_label_table({1: "Tumor Core", 2: "Left Kidney"}, strict=False) == {
        1: "tumor_core", 2: "kidney_left"}
    assert lenient_organ("Tumor-Core") == "tumor_core" and lenient_organ("IVC") == "inferior_vena_cava"
