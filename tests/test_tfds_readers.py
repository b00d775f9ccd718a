"""Every reader's TFDS builder on the miniature official layouts of tests/test_sources*.py."""

from __future__ import annotations

import numpy as np
import pytest
from test_sources import ESC_ROWS, make_esc50
from test_sources_datasets import make_asvspoof, make_audioset, make_in_the_wild, make_sonics, make_speech_commands

from audiorep.data.sources import read_dataset
from audiorep.data.tfds import UNSPLIT, data_source, prepare

RATE = 8000

LAYOUTS = {
    "esc50": (lambda root: make_esc50(root, ESC_ROWS), {}),
    "speech_commands": (make_speech_commands, {"num_classes": 12}),
    "audioset": (make_audioset, {}),
    "sonics": (make_sonics, {"audio_ext": ".wav"}),
    "asvspoof2019_la": (make_asvspoof, {}),
    "in_the_wild": (make_in_the_wild, {}),
}


@pytest.mark.parametrize("reader", sorted(LAYOUTS))
def test_builder_stores_every_record_with_its_labels_split_fold_and_group(tmp_path, reader):
    make, options = LAYOUTS[reader]
    root = make(tmp_path / "raw")
    index = read_dataset(reader, root, **options)
    prepared = prepare(reader, root, tmp_path / "out", sample_rate=RATE, options=options)
    assert prepared.name == f"audiorep_{reader}" and prepared.multilabel == index.multilabel
    by_split: dict[str, list] = {}
    for rec in index.records:
        by_split.setdefault(rec.split or UNSPLIT, []).append(rec)
    assert prepared.splits == {split: len(recs) for split, recs in by_split.items()}
    for split, records in by_split.items():
        source = data_source(tmp_path / "out", split)
        for i, rec in enumerate(records):
            ex = source[i]
            assert ex["path"].decode() == rec.path and ex["start_s"] == pytest.approx(rec.start_s)
            if index.multilabel:
                assert np.flatnonzero(ex["label"]).tolist() == sorted(rec.labels)
            else:
                assert ex["label"] == (rec.labels[0] if rec.labels else -1)
            assert ex["fold"] == (-1 if rec.fold is None else rec.fold)
            assert ex["group"].decode() == (rec.group or "")
            if rec.end_s is not None:  # windowed records (Speech Commands _silence_) keep only their window
                assert ex["audio"].shape[0] == round((rec.end_s - rec.start_s) * RATE)


def test_multilabel_build_gives_multi_hot_batches(tmp_path):
    from audiorep.data import pipeline as pl

    root = make_audioset(tmp_path / "raw")
    index = read_dataset("audioset", root)
    prepare("audioset", root, tmp_path / "out", sample_rate=RATE)
    split = index.records[0].split
    records = [r for r in index.records if r.split == split]
    source = pl.tfds_source(tmp_path / "out", split)
    batch = next(iter(pl.eval_dataset(source, chunk_samples=RATE, batch_size=4, shard=pl.Shard(0, 1))))
    assert batch["label"].dtype == np.float32 and batch["label"].shape == (4, len(index.classes))
    for row, i in enumerate(batch["index"]):
        expected = np.zeros(len(index.classes), np.float32)
        if i >= 0:
            expected[list(records[i].labels)] = 1.0
        np.testing.assert_array_equal(batch["label"][row], expected)
