"""Spoofing readers on miniature copies of the real layouts: a deepfake folder (folders or labels.csv), ASVspoof
2021 LA / DF with their full keys, MLAAD with M-AILABS bona fide, and the folder reader's labels.csv."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_sources import write_clip
from test_sources_datasets import make_asvspoof, make_in_the_wild

from audiorep.data.sources import READERS, DatasetError, read_asvspoof2021, read_dataset


def by_name(index):
    return {Path(r.path).name: r for r in index.records}


# ------------------------------------------------------------------------------------------ deepfake folder
def make_deepfake_folders(root: Path) -> Path:
    for rel in ("bonafide/0_george_0.wav", "bonafide/1_jackson_0.wav", "spoof/world/0_george_0.wav",
                "spoof/griffinlim/1_jackson_0.wav", "spoof/2_theo_0.wav"):
        write_clip(root / rel)
    return root


def test_deepfake_folders_give_classes_and_attack_ids_from_spoof_subfolders(tmp_path):
    idx = read_dataset("deepfake_folder", make_deepfake_folders(tmp_path), speaker_regex=r"^\d_([a-z]+)_")
    assert idx.classes == ("bonafide", "spoof") and idx.listed is None
    recs = sorted(idx.records, key=lambda r: r.path)
    got = [(Path(r.path).relative_to(tmp_path).as_posix(), r.label_names[0], r.info.get("attack_id"), r.group)
           for r in recs]
    assert got == [("bonafide/0_george_0.wav", "bonafide", None, "george"),
                   ("bonafide/1_jackson_0.wav", "bonafide", None, "jackson"),
                   ("spoof/2_theo_0.wav", "spoof", None, "theo"),
                   ("spoof/griffinlim/1_jackson_0.wav", "spoof", "griffinlim", "jackson"),
                   ("spoof/world/0_george_0.wav", "spoof", "world", "george")]


def test_deepfake_folders_with_a_clip_outside_both_folders_name_it(tmp_path):
    root = make_deepfake_folders(tmp_path)
    write_clip(root / "extra" / "x.wav")
    with pytest.raises(DatasetError, match=r"extra/x.wav: neither under .*bonafide nor under .*spoof"):
        read_dataset("deepfake_folder", root)


def test_deepfake_folder_with_one_class_only_is_refused(tmp_path):
    write_clip(tmp_path / "bonafide" / "a.wav")
    with pytest.raises(DatasetError, match="only bonafide clips found; a detection task needs both"):
        read_dataset("deepfake_folder", tmp_path)


def write_labels_csv(root: Path, rows: list[str]) -> Path:
    """A folder with labels.csv = `rows` (a header, then one row per clip) and a short wav at each row's path."""
    for line in rows[1:]:
        write_clip(root / line.split(",")[0])
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def make_deepfake_csv(root: Path) -> Path:
    rows = ["path,label,attack_id,speaker,gender,language,source,word",
            "real/a.wav,bonafide,,spk1,female,en,fsdd,zero",
            "real/b.wav,bona-fide,,spk2,male,de,fsdd,one",
            "fake/a_world.wav,spoof,world,spk1,female,en,fsdd,zero",
            "fake/b_lpc.wav,fake,lpc,spk2,male,de,fsdd,one"]
    return write_labels_csv(root, rows)


def test_deepfake_labels_csv_carries_every_metadata_column(tmp_path):
    idx = read_dataset("deepfake_folder", make_deepfake_csv(tmp_path))
    recs = by_name(idx)
    assert recs["b_lpc.wav"].labels == (1,) and recs["b.wav"].labels == (0,)
    assert recs["a_world.wav"].info == {"attack_id": "world", "speaker": "spk1", "gender": "female", "language": "en",
                                        "source": "fsdd", "word": "zero"}
    assert recs["a.wav"].group == "spk1" and "attack_id" not in recs["a.wav"].info
    assert idx.file_counts() == {"expected": 4, "present": 4, "missing": 0}


def test_deepfake_labels_csv_keeps_the_source_clip_a_spoof_was_made_from(tmp_path):
    rows = ["path,label,attack_id,speaker,source_clip", "real/a.wav,bonafide,,spk1,real/a.wav",
            "fake/a_world.wav,spoof,world,spk1,real/a.wav"]
    recs = by_name(read_dataset("deepfake_folder", write_labels_csv(tmp_path, rows)))
    assert recs["a_world.wav"].info["source_clip"] == "real/a.wav" == recs["a.wav"].info["source_clip"]


@pytest.mark.parametrize("line, error", [
    ("real/a.wav,maybe,,spk1,,,,", r"labels.csv, line 2: label 'maybe' is not bonafide or spoof"),
    ("real/a.wav,bonafide,world,spk1,,,,", r"labels.csv, line 2: a bona fide clip with attack_id 'world'"),
    (",spoof,world,spk1,,,,", r"labels.csv, line 2: empty path"),
], ids=["unknown label", "bona fide with attack", "empty path"])
def test_deepfake_labels_csv_bad_line_is_named(tmp_path, line, error):
    root = make_deepfake_csv(tmp_path)
    rows = (root / "labels.csv").read_text().splitlines()
    (root / "labels.csv").write_text("\n".join([rows[0], line, *rows[2:]]) + "\n")
    with pytest.raises(DatasetError, match=error):
        read_dataset("deepfake_folder", root)


def test_deepfake_labels_csv_without_label_column_lists_the_columns(tmp_path):
    (tmp_path / "labels.csv").write_text("path,class\na.wav,spoof\n")
    with pytest.raises(DatasetError, match=r"labels.csv, line 1: missing column\(s\) \['label'\]"):
        read_dataset("deepfake_folder", tmp_path)


def test_deepfake_labels_csv_counts_missing_clips(tmp_path):
    root = make_deepfake_csv(tmp_path)
    (root / "fake" / "b_lpc.wav").unlink()
    idx = read_dataset("deepfake_folder", root)
    assert idx.file_counts() == {"expected": 4, "present": 3, "missing": 1}
    assert idx.missing == [str(root / "fake" / "b_lpc.wav")]


# ------------------------------------------------------------------------------------------ ASVspoof 2021
LA_KEYS = ["LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval",
           "LA_0009 LA_E_5464494 alaw ita_tx bonafide bonafide notrim eval",
           "LA_0012 LA_E_1000001 none - A19 spoof notrim progress",
           "LA_0012 LA_E_1000002 g722 loc_tx bonafide bonafide notrim eval"]
DF_KEYS = ["LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim eval traditional_vocoder - - - -",
           "LA_0023 DF_E_2000012 nocodec asvspoof bonafide bonafide notrim eval bonafide - - - -",
           "TEF2 DF_E_2000013 low_m4a vcc2020 Task1-team20 spoof notrim eval neural_vocoder_nonautoregressive "
           "Task1 team20 FF E",
           "TEF2 DF_E_2000014 low_m4a vcc2020 bonafide bonafide notrim eval bonafide - - - E"]


def make_asvspoof2021(root: Path, track: str) -> Path:
    lines = LA_KEYS if track == "LA" else DF_KEYS
    keys = root / "keys" / track / "CM" / "trial_metadata.txt"
    keys.parent.mkdir(parents=True)
    keys.write_text("\n".join(lines) + "\n")
    for i, line in enumerate(lines):
        trial = line.split()[1]
        # DF ships in four archive parts; LA in one folder
        sub = (f"ASVspoof2021_DF_eval_part0{i % 2}/ASVspoof2021_DF_eval" if track == "DF" else "ASVspoof2021_LA_eval")
        write_clip(root / sub / "flac" / f"{trial}.flac")
    return root


def test_asvspoof2021_la_reads_the_eval_subset_of_the_full_keys(tmp_path):
    idx = read_dataset("asvspoof2021_la", make_asvspoof2021(tmp_path, "LA"))
    recs = by_name(idx)
    assert sorted(recs) == ["LA_E_1000002.flac", "LA_E_5464494.flac", "LA_E_9332881.flac"]
    spoof = recs["LA_E_9332881.flac"]
    assert spoof.labels == (1,) and spoof.group == "LA_0009" and spoof.split == "test"
    assert spoof.info == {"attack_id": "A07", "speaker": "LA_0009", "codec": "alaw", "transmission": "ita_tx",
                          "trim": "notrim", "subset": "eval", "file_id": "LA_E_9332881"}
    assert "attack_id" not in recs["LA_E_5464494.flac"].info and recs["LA_E_5464494.flac"].labels == (0,)
    assert any("1 trials of other subsets" in p for p in idx.problems)
    assert len(read_dataset("asvspoof2021_la", tmp_path, subsets=("eval", "progress"))) == 4


def test_asvspoof2021_df_finds_clips_in_every_archive_part_and_keeps_the_source(tmp_path):
    idx = read_dataset("asvspoof2021_df", make_asvspoof2021(tmp_path, "DF"))
    recs = by_name(idx)
    assert len(recs) == 4 and idx.complete
    assert "part01" in recs["DF_E_2000012.flac"].path and "part00" in recs["DF_E_2000011.flac"].path
    vcc = recs["DF_E_2000013.flac"].info
    assert vcc["source"] == "vcc2020" and vcc["attack_id"] == "Task1-team20" and vcc["language"] == "E"
    assert vcc["vocoder"] == "neural_vocoder_nonautoregressive" and vcc["gender_pair"] == "FF"
    assert recs["DF_E_2000011.flac"].info["source"] == "asvspoof" and "language" not in recs["DF_E_2000011.flac"].info


def test_asvspoof2021_track_readers_fix_their_track(tmp_path):
    root = make_asvspoof2021(tmp_path, "DF")
    assert "track" not in READERS["asvspoof2021_df"].options
    with pytest.raises(DatasetError, match=r"reader 'asvspoof2021_la' has no option\(s\) \['track'\]"):
        read_dataset("asvspoof2021_la", root, track="DF")
    assert len(read_asvspoof2021(root, track="DF")) == len(read_dataset("asvspoof2021_df", root)) == 4
    with pytest.raises(DatasetError, match="unknown ASVspoof 2021 track 'PA'; tracks are"):
        read_asvspoof2021(root, track="PA")


def test_asvspoof2021_finds_keys_unpacked_under_their_archive_folder(tmp_path):
    root = make_asvspoof2021(tmp_path, "LA")
    (root / "LA-keys-full").mkdir()
    (root / "keys").rename(root / "LA-keys-full" / "keys")
    assert len(read_dataset("asvspoof2021_la", root)) == 3


def test_asvspoof2021_without_keys_says_which_archive_to_unpack(tmp_path):
    write_clip(tmp_path / "ASVspoof2021_LA_eval" / "flac" / "LA_E_9332881.flac")
    with pytest.raises(DatasetError, match=r"keys/LA/CM/trial_metadata.txt: ASVspoof 2021 LA key file not found"
                                           r".*LA-keys-full.tar.gz.*-o keys="):
        read_dataset("asvspoof2021_la", tmp_path)


@pytest.mark.parametrize("line, error", [
    ("LA_0009 LA_E_9332881 - A07 spoof", r"line 2: expected 8 fields `SPEAKER TRIAL CODEC TRANSMISSION ATTACK KEY "
                                         r"TRIM SUBSET` \(the full LA keys, LA-keys-full.tar.gz\), got 5"),
    ("LA_0009 LA_E_9332881 alaw ita_tx A07 fake notrim eval", r"line 2: key 'fake' is not in"),
    ("LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim final", r"line 2: subset 'final' is not one of"),
], ids=["2019 format", "unknown key", "unknown subset"])
def test_asvspoof2021_malformed_key_line_is_named(tmp_path, line, error):
    root = make_asvspoof2021(tmp_path, "LA")
    keys = root / "keys" / "LA" / "CM" / "trial_metadata.txt"
    keys.write_text(LA_KEYS[1] + "\n" + line + "\n")
    with pytest.raises(DatasetError, match="trial_metadata.txt, " + error):
        read_dataset("asvspoof2021_la", root)


def test_asvspoof2021_with_a_2019_train_root_has_the_challenge_splits(tmp_path):
    root = make_asvspoof2021(tmp_path / "2021", "LA")
    idx = read_dataset("asvspoof2021_la", root, train_root=str(make_asvspoof(tmp_path / "2019")))
    assert {s: len(idx.split(s)) for s in idx.splits} == {"train": 3, "validation": 2, "test": 3}
    assert idx.file_counts() == {"expected": 8, "present": 8, "missing": 0}


# ------------------------------------------------------------------------------------------ MLAAD + M-AILABS
MAILABS = ["en_US/by_book/female/judy_bieber/emerald_city_of_oz/wavs/emerald_city_of_oz_01_f000001.wav",
           "en_US/by_book/male/elliot_miller/poisoned_pen/wavs/poisoned_pen_01_f000002.wav",
           "de_DE/by_book/mix/grune_haus/wavs/grune_haus_01_f000003.wav",
           "de_DE/by_book/female/eva_k/kleine_lord/wavs/kleine_lord_01_f000004.wav"]
HEADER = "path|original_file|language|is_original_language|duration|training_data|model_name|architecture|transcript"


def make_mlaad(root: Path) -> tuple[Path, Path]:
    mlaad, mailabs = root / "MLAAD", root / "M-AILABS"
    systems = {("en", "tts_models_en_ljspeech_vits", "tts_models/en/ljspeech/vits", "vits"): (0, 1),
               ("de", "tts_models_multilingual_multi-dataset_xtts_v2",
                "tts_models/multilingual/multi-dataset/xtts_v2", "xtts_v2"): (2, 3, 0)}
    for (lang, folder, model, arch), originals in systems.items():
        lines = [HEADER]
        for k, o in enumerate(originals):
            name = f"{folder}_{k}.wav"
            write_clip(mlaad / "fake" / lang / folder / name)
            lines.append(f"./fake/{lang}/{folder}/{name}|{MAILABS[o]}|{lang}|{MAILABS[o][:2] == lang}|3.2|"
                         f"ljspeech|{model}|{arch}|He said \"hello\", then left")
        (mlaad / "fake" / lang / folder / "meta.csv").write_text("\n".join(lines) + "\n")
    for rel in MAILABS:
        write_clip(mailabs / rel)
    write_clip(mailabs / "en_US/by_book/female/judy_bieber/emerald_city_of_oz/wavs/unreferenced.wav")
    return mlaad, mailabs


def test_mlaad_reads_pipe_separated_meta_and_the_referenced_mailabs_clips(tmp_path):
    mlaad, mailabs = make_mlaad(tmp_path)
    idx = read_dataset("mlaad", mlaad, bonafide_root=str(mailabs))
    assert idx.complete and idx.file_counts()["expected"] == 5 + 4
    fakes = [r for r in idx.records if r.labels == (1,)]
    real = [r for r in idx.records if r.labels == (0,)]
    assert len(fakes) == 5 and len(real) == 4
    r = next(r for r in fakes if r.path.endswith("xtts_v2_0.wav"))
    assert r.info["attack_id"] == "tts_models_multilingual_multi-dataset_xtts_v2" and r.info["language"] == "de"
    assert r.info["model_name"] == "tts_models/multilingual/multi-dataset/xtts_v2"
    assert r.info["architecture"] == "xtts_v2"
    mix = by_name(idx)["grune_haus_01_f000003.wav"]
    assert r.group == mix.group == "book:grune_haus" and "speaker" not in mix.info
    judy = by_name(idx)["emerald_city_of_oz_01_f000001.wav"]
    assert judy.info == {"language": "en", "speaker": "judy_bieber", "gender": "female", "book": "emerald_city_of_oz"}
    made_from_judy = by_name(idx)["tts_models_en_ljspeech_vits_0.wav"]
    assert made_from_judy.group == "judy_bieber" and made_from_judy.info["speaker"] == "judy_bieber"


def test_mlaad_bonafide_all_takes_every_mailabs_clip(tmp_path):
    mlaad, mailabs = make_mlaad(tmp_path)
    idx = read_dataset("mlaad", mlaad, bonafide_root=str(mailabs), bonafide="all")
    assert sum(r.labels == (0,) for r in idx.records) == 5


def test_mlaad_without_bonafide_root_says_to_pass_the_mailabs_folder(tmp_path):
    mlaad, _ = make_mlaad(tmp_path)
    with pytest.raises(DatasetError, match="pass the M-AILABS folder with --bonafide-root"):
        read_dataset("mlaad", mlaad)
    assert len(read_dataset("mlaad", mlaad, bonafide="none")) == 5


def test_mlaad_meta_without_original_file_column_is_named(tmp_path):
    mlaad, mailabs = make_mlaad(tmp_path)
    meta = mlaad / "fake" / "en" / "tts_models_en_ljspeech_vits" / "meta.csv"
    meta.write_text("path|language|model_name\n./fake/en/x/a.wav|en|m\n")
    with pytest.raises(DatasetError, match=r"meta.csv, line 1: missing column\(s\) \['original_file'\]"):
        read_dataset("mlaad", mlaad, bonafide_root=str(mailabs))


def test_mlaad_without_fake_folder_names_it(tmp_path):
    (tmp_path / "MLAAD").mkdir()
    with pytest.raises(DatasetError, match=r"MLAAD/fake: MLAAD fake/ folder not found"):
        read_dataset("mlaad", tmp_path / "MLAAD", bonafide="none")


def test_mlaad_counts_a_missing_mailabs_reference(tmp_path):
    mlaad, mailabs = make_mlaad(tmp_path)
    (mailabs / MAILABS[1]).unlink()
    idx = read_dataset("mlaad", mlaad, bonafide_root=str(mailabs))
    assert idx.missing == [str(mailabs / MAILABS[1])]


# ------------------------------------------------------------------------------------------ In-the-Wild
def test_in_the_wild_records_carry_the_speaker(tmp_path):
    idx = read_dataset("in_the_wild", make_in_the_wild(tmp_path))
    assert {r.info["speaker"] for r in idx.records} == {"Alec Guinness", "Barack Obama"}


# ------------------------------------------------------------------------------------------ folder labels.csv
def make_labelled_folder(root: Path) -> Path:
    rows = ["path,label,speaker,language", "clips/0_a.wav,dog,alice,en", "clips/1_a.wav,cat,alice,en",
            "clips/0_b.wav,dog,bob,fr", "clips/1_b.wav,cat,bob,fr"]
    return write_labels_csv(root, rows)


def test_folder_labels_csv_gives_labels_groups_and_metadata(tmp_path):
    idx = read_dataset("folder", make_labelled_folder(tmp_path))
    assert idx.classes == ("cat", "dog") and idx.listed == 4
    r = by_name(idx)["0_b.wav"]
    assert r.label_names == ("dog",) and r.group == "bob" and r.info == {"speaker": "bob", "language": "fr"}


def test_folder_labels_csv_groups_from_a_named_column_or_a_regex(tmp_path):
    root = make_labelled_folder(tmp_path)
    assert by_name(read_dataset("folder", root, group_column="language"))["0_b.wav"].group == "fr"
    text = (root / "labels.csv").read_text().replace("speaker", "who")
    (root / "labels.csv").write_text(text)
    assert by_name(read_dataset("folder", root, group_regex=r"_([a-z])$"))["0_b.wav"].group == "b"
    with pytest.raises(DatasetError, match=r"group_column 'speaker' is not a column"):
        read_dataset("folder", root, group_column="speaker")


def test_folder_labels_csv_bad_split_is_named(tmp_path):
    root = make_labelled_folder(tmp_path)
    (root / "labels.csv").write_text("path,label,split\nclips/0_a.wav,dog,final\n")
    with pytest.raises(DatasetError, match=r"labels.csv, line 2: split 'final' is not one of"):
        read_dataset("folder", root)
