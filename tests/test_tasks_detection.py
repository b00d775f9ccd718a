"""Detection tasks on miniature real layouts (deepfake folder, In-the-Wild, MLAAD + M-AILABS, ASVspoof 2021 LA /
DF, the generic folder): group-disjoint splits, cross-domain protocols side by side with their in-domain
references, per-group metrics in the row, and `audiorep probe --protocol` end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import tone
from test_sources_spoofing import DF_KEYS, LA_KEYS, MAILABS, make_mlaad
from test_tasks import RATE, ToneEmbedder, make_asvspoof

from audiorep.audio.io import save_audio
from audiorep.downstream import tasks as T
from audiorep.downstream.cache import EmbeddingCache

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
ATTACKS = {"world": 1500.0, "griffinlim": 1700.0, "lpc": 2600.0}


def _wav(path: Path, freq: float) -> None:
    save_audio(path, tone(freq, seconds=0.05, rate=RATE), RATE)


def make_deepfake_folder(root: Path, csv: bool = True) -> Path:
    """What `audiorep datasets spoof` makes of FSDD: each speaker's digits, and every attack applied to each
    (tones stand in for speech: bona fide low, each attack at its own pitch)."""
    rows = ["path,label,attack_id,speaker,gender,language,source,word"]
    for k, spk in enumerate(SPEAKERS):
        gender = "female" if k % 2 else "male"
        for digit in range(2):
            name = f"{digit}_{spk}_0.wav"
            _wav(root / "bonafide" / name, 300.0 + 20 * k + 10 * digit)
            rows.append(f"bonafide/{name},bonafide,,{spk},{gender},en,fsdd,{digit}")
            for attack, freq in ATTACKS.items():
                _wav(root / "spoof" / attack / name, freq + 20 * k)
                rows.append(f"spoof/{attack}/{name},spoof,{attack},{spk},{gender},en,fsdd,{digit}")
    if csv:
        (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def make_in_the_wild(root: Path) -> Path:
    rows = ["file,speaker,label"]
    for k, spk in enumerate(SPEAKERS):
        for i, label in enumerate(("bona-fide", "spoof", "bona-fide", "spoof")):
            _wav(root / f"{4 * k + i}.wav", (300.0 if label == "bona-fide" else 1800.0) + 20 * k)
            rows.append(f"{4 * k + i}.wav,{spk.title()} {spk[0].upper()}.,{label}")
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    return root


def make_mlaad_task(root: Path) -> tuple[Path, dict]:
    mlaad, mailabs = make_mlaad(root)
    extra = [f"en_US/by_book/female/s{k}/book/wavs/b_{k}.wav" for k in range(4)]
    lines = ["path|original_file|language|is_original_language|duration|training_data|model_name|architecture|"
             "transcript"]
    for k, rel in enumerate(extra):
        write = mlaad / "fake" / "en" / "griffin_lim" / f"g_{k}.wav"
        _wav(write, 2000.0 + 10 * k)
        _wav(mailabs / rel, 300.0 + 10 * k)
        lines.append(f"./fake/en/griffin_lim/g_{k}.wav|{rel}|en|True|1.0|none|griffin_lim|griffin_lim|a b")
    (mlaad / "fake" / "en" / "griffin_lim" / "meta.csv").write_text("\n".join(lines) + "\n")
    for rel in MAILABS:
        _wav(mailabs / rel, 320.0)
    return mlaad, {"bonafide_root": str(mailabs)}


def make_asvspoof2021(root: Path, track: str) -> Path:
    lines = []
    base = LA_KEYS if track == "LA" else DF_KEYS
    for k in range(6):  # six speakers, each with bona fide and spoofed trials (the eval subset)
        for j, line in enumerate(base):
            parts = line.split()
            parts[0], parts[1] = f"LA_{k:04d}", f"{track}_E_{k}{j:06d}"
            parts[7] = "eval"
            lines.append(" ".join(parts))
            spoof = parts[5] == "spoof"
            _wav(root / f"ASVspoof2021_{track}_eval" / "flac" / f"{parts[1]}.flac", (1800.0 if spoof else 300.0) + k)
    keys = root / "keys" / track / "CM" / "trial_metadata.txt"
    keys.parent.mkdir(parents=True)
    keys.write_text("\n".join(lines) + "\n")
    return root


def make_labelled_folder(root: Path, classes=("dog", "cat")) -> Path:
    rows = ["path,label,speaker"]
    for k, spk in enumerate(SPEAKERS):
        for c, name in enumerate(classes):
            _wav(root / "clips" / f"{name}_{spk}.wav", 300.0 + 900 * c + 10 * k)
            rows.append(f"clips/{name}_{spk}.wav,{name},{spk}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


DETECTION_LAYOUTS = {
    "deepfake_folder": lambda p: (make_deepfake_folder(p), {}),
    "inthewild": lambda p: (make_in_the_wild(p), {}),
    "mlaad": make_mlaad_task,
    "asvspoof2021_la": lambda p: (make_asvspoof2021(p, "LA"), {}),
    "asvspoof2021_df": lambda p: (make_asvspoof2021(p, "DF"), {}),
    "folder": lambda p: (make_labelled_folder(p), {}),
}


@pytest.mark.parametrize("task", sorted(DETECTION_LAYOUTS))
def test_detection_task_splits_never_share_a_group(tmp_path, task):
    root, options = DETECTION_LAYOUTS[task](tmp_path / task)
    spec = T.get_task(task)
    index = spec.read(root, **options)
    for sp in spec.for_index(index).splits(index):
        tr, va, te = ({T.group_of(r) for r in p} for p in (sp.train, sp.validation, sp.test))
        assert not (tr & va) and not (tr & te) and not (va & te), sp.name
        assert {r.labels[0] for r in sp.test} == set(range(len(index.classes))), sp.name


def run(task, root, tmp_path, **kw):
    return T.run(task, ToneEmbedder(), root, EmbeddingCache(tmp_path / "cache"), probe="knn", progress=False, **kw)


def test_cross_attack_reports_in_domain_and_cross_domain_eer_per_attack(tmp_path):
    res = run("deepfake_folder", make_deepfake_folder(tmp_path / "df"), tmp_path, protocol="cross-attack")
    assert res.task == "deepfake_folder@cross-attack" and res.metric == "eer"
    proto = res.extra["protocol"]
    assert proto["name"] == "cross-attack" and proto["column"] == "attack_id" and proto["probes"] == 6
    assert [r["held_out"] for r in proto["rows"]] == sorted(ATTACKS)
    assert res.folds == [r["cross_domain"] for r in proto["rows"]] and res.extra["splits"] == [
        f"cross:{a}" for a in sorted(ATTACKS)]
    for r in proto["rows"]:
        assert r["in_domain"] == 0.0  # every attack's tones are far from the bona fide ones when seen
        assert r["gap"] == pytest.approx(r["cross_domain"] - r["in_domain"]) and r["unit"] == "group"
        assert r["test"] == 2 * 2 + 2 * 2  # two unseen speakers: their two bona fide and two spoofed digits
    assert res.mean == pytest.approx(np.mean(res.folds))


def test_cross_protocol_row_is_a_task_of_its_own_next_to_the_in_domain_row(tmp_path):
    root = make_deepfake_folder(tmp_path / "df")
    in_domain = run("deepfake_folder", root, tmp_path, protocol="in-domain", folds=3)
    assert in_domain.task == "deepfake_folder" and "protocol" not in in_domain.extra and len(in_domain.folds) == 3
    cross = run("deepfake_folder", root, tmp_path, protocol="cross-speaker", max_folds=2)
    assert cross.task == "deepfake_folder@cross-speaker" and len(cross.folds) == 2
    assert {r["unit"] for r in cross.extra["protocol"]["rows"]} == {"file"}


def test_detection_rows_carry_per_group_and_per_attack_metrics(tmp_path):
    res = run("deepfake_folder", make_deepfake_folder(tmp_path / "df"), tmp_path, folds=3)
    groups = res.extra["groups"]
    assert set(groups) == {"gender", "speaker", "attack_id"}  # one language and one source: no breakdown
    gender = groups["gender"]
    assert gender["metric"] == "eer" and set(gender["per_group"]) == {"female", "male"}
    assert gender["worst"] == max(gender["per_group"].values())
    assert gender["gap"] == pytest.approx(max(gender["per_group"].values()) - min(gender["per_group"].values()))
    assert gender["counts"] == {"female": 24, "male": 24}
    assert set(groups["attack_id"]["per_group"]) == set(ATTACKS)


def test_classification_rows_carry_per_group_accuracy(tmp_path):
    res = run("folder", make_labelled_folder(tmp_path / "f"), tmp_path, folds=3)
    assert res.metric == "accuracy" and res.extra["groups"]["speaker"]["metric"] == "accuracy"
    assert set(res.extra["groups"]["speaker"]["per_group"]) == set(SPEAKERS)


def test_folder_task_is_detection_when_its_classes_are_bona_fide_and_spoof(tmp_path):
    res = run("folder", make_labelled_folder(tmp_path / "f", classes=("real", "fake")), tmp_path, folds=3)
    assert res.metric == "eer" and not res.higher_is_better and res.mean == 0.0


def test_asvspoof2021_with_a_2019_train_root_trains_on_2019(tmp_path):
    root = make_asvspoof2021(tmp_path / "2021", "LA")
    res = run("asvspoof2021_la", root, tmp_path, reader_options={"train_root": str(make_asvspoof(tmp_path / "2019"))})
    assert res.extra["splits"] == ["official"] and res.extra["sizes"][0]["test"] == 6 * 4
    assert res.extra["sizes"][0]["train"] == 6 and res.extra["sizes"][0]["validation"] == 6


def test_mlaad_task_runs_with_the_mailabs_root(tmp_path):
    root, options = make_mlaad_task(tmp_path / "m")
    res = run("mlaad", root, tmp_path, reader_options=options, folds=3)
    assert res.metric == "eer" and len(res.folds) == 3


def test_probe_command_prints_in_domain_and_cross_domain_eer_per_attack(tmp_path, capsys):
    from audiorep.cli import main
    from audiorep.downstream.leaderboard import read_results

    root = make_deepfake_folder(tmp_path / "df", csv=False)
    store = tmp_path / "results.jsonl"
    rc = main(["probe", "--model", "logmel", "--task", "deepfake_folder", "--data-root", str(root), "--probe", "knn",
               "--protocol", "cross-attack", "--group-regex", r"^\d_([a-z]+)_", "--cache", str(tmp_path / "cache"),
               "--results", str(store), "-q"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "cross-attack: eer ↓ per held-out attack_id" in out and "in-domain" in out and "cross-domain" in out
    for attack in ATTACKS:
        assert attack in out
    (row,) = read_results(store)
    assert row.task == "deepfake_folder@cross-attack" and len(row.extra["protocol"]["rows"]) == 3
    assert row.extra["groups"]["speaker"]["metric"] == "eer"


def test_probe_command_passes_the_bonafide_root_to_mlaad(tmp_path, capsys):
    from audiorep.cli import main

    root, options = make_mlaad_task(tmp_path / "m")
    args = ["probe", "--model", "logmel", "--task", "mlaad", "--data-root", str(root), "--probe", "knn", "--folds",
            "3", "--cache", str(tmp_path / "cache"), "-q"]
    assert main(args) == 2
    assert "--bonafide-root" in capsys.readouterr().err
    assert main(args + ["--bonafide-root", options["bonafide_root"]]) == 0


def test_probe_command_refuses_a_reader_flag_the_task_does_not_take(tmp_path, capsys):
    from audiorep.cli import main

    root = make_deepfake_folder(tmp_path / "df")
    assert main(["probe", "--model", "logmel", "--task", "deepfake_folder", "--data-root", str(root),
                 "--train-root", str(tmp_path), "--cache", str(tmp_path / "cache"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --train-root does not apply to the deepfake_folder reader") and err.count("\n") == 1
    assert not (tmp_path / "cache").exists()


def test_probe_command_protocol_on_missing_metadata_is_one_line(tmp_path, capsys):
    from audiorep.cli import main

    root = make_deepfake_folder(tmp_path / "df")
    assert main(["probe", "--model", "logmel", "--task", "deepfake_folder", "--data-root", str(root), "--probe",
                 "knn", "--protocol", "cross-language", "--cache", str(tmp_path / "cache"), "-q"]) == 2
    assert "'language' has one value ('en')" in capsys.readouterr().err
