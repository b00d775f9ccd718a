"""Cross-domain protocols: leave one attack / speaker / language / source out, paired with an in-domain
reference on the same test clips; no group or held-out value ever crosses training and test."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiorep.data.sources import Record
from audiorep.downstream.tasks import TaskError
from audiorep.downstream.tasks.protocols import PROTOCOLS, cross_domain_splits, protocol_column, summarise


def rec(path, label, speaker, **meta):
    info = {"speaker": speaker, **meta} if speaker else meta
    return Record(path, (label,), (("bonafide", "spoof")[label],), "", None, speaker, "deepfake_folder",
                  extra=tuple(sorted((k, v) for k, v in info.items() if v)))


def corpus(speakers=6, attacks=("gl", "lpc", "world"), per=2, languages=None):
    """Every speaker reads `per` bona fide clips, each spoofed by every attack (the layout spoof makes)."""
    out = []
    for k in range(speakers):
        spk = f"s{k}"
        lang = languages[k] if languages else None
        for i in range(per):
            out.append(rec(f"/b/{spk}_{i}.wav", 0, spk, language=lang))
            out += [rec(f"/s/{a}/{spk}_{i}.wav", 1, spk, attack_id=a, language=lang) for a in attacks]
    return out


def test_protocol_names_map_to_metadata_columns():
    assert PROTOCOLS == {"in-domain": None, "cross-attack": "attack_id", "cross-speaker": "speaker",
                         "cross-language": "language", "cross-source": "source"}
    with pytest.raises(TaskError, match="protocols are in-domain, cross-attack"):
        protocol_column("cross-gender")


def test_cross_attack_tests_each_attack_on_unseen_speakers_with_their_bona_fide():
    held, skipped = cross_domain_splits(corpus(), "attack_id", seed=0)
    assert [h.value for h in held] == ["gl", "lpc", "world"] and not skipped
    for h in held:
        test_speakers = {r.group for r in h.cross.test}
        assert {r.info.get("attack_id") for r in h.cross.test} == {h.value, None}
        assert len(test_speakers) == 2  # 30 % of six speakers
        assert {r.label_names[0] for r in h.cross.test} == {"bonafide", "spoof"}
        assert all(r.info.get("attack_id") != h.value for r in h.cross.train + h.cross.validation)
        assert not test_speakers & {r.group for r in h.cross.train + h.cross.validation}


def test_in_domain_reference_shares_the_test_and_adds_the_held_out_attack_from_training_speakers():
    held, _ = cross_domain_splits(corpus(), "attack_id", seed=0)
    for h in held:
        assert h.in_domain.test == h.cross.test and h.unit == "group"
        added = [r for r in h.in_domain.train + h.in_domain.validation if r not in h.cross.train + h.cross.validation]
        assert added and {r.info["attack_id"] for r in added} == {h.value}
        assert set(map(id, h.cross.train)) <= set(map(id, h.in_domain.train))


def test_cross_speaker_halves_the_speakers_files_for_the_in_domain_reference():
    held, _ = cross_domain_splits(corpus(speakers=4, per=4), "speaker", seed=1)
    assert len(held) == 4
    for h in held:
        assert {r.group for r in h.cross.test} == {h.value} and h.unit == "file"
        own = [r for r in h.in_domain.train if r.group == h.value]
        assert own and not {r.path for r in own} & {r.path for r in h.cross.test}


def test_cross_language_keeps_a_languages_speakers_out_of_training():
    held, _ = cross_domain_splits(corpus(speakers=6, languages="eeddff"), "language", seed=0)
    for h in held:
        test_speakers = {r.group for r in h.cross.test}
        assert {r.info["language"] for r in h.cross.test} == {h.value} and len(test_speakers) == 1
        assert {r.group for r in h.in_domain.train if r.info["language"] == h.value} == \
            {r.group for r in corpus(languages="eeddff") if r.info["language"] == h.value} - test_speakers


def test_a_value_without_bona_fide_in_its_test_is_skipped_with_the_reason():
    recs = corpus(speakers=4, languages="eedd") + [rec("/s/x/p.wav", 1, "s9", attack_id="gl", language="pt")]
    held, skipped = cross_domain_splits(recs, "language", seed=0)
    assert [h.value for h in held] == ["d", "e"]
    assert skipped == {"pt": "the test part would hold only class [1]"}


def test_cross_attack_test_holds_no_spoofs_of_unnamed_attacks():
    recs = corpus() + [rec(f"/s/unknown/s{k}.wav", 1, f"s{k}") for k in range(6)]
    held, _ = cross_domain_splits(recs, "attack_id", seed=0)
    for h in held:
        assert all(r.info.get("attack_id") == h.value for r in h.cross.test if r.labels == (1,))


def test_protocol_on_a_column_no_record_carries_says_how_to_add_it():
    with pytest.raises(TaskError, match="no record carries 'source'.*pick another --protocol"):
        cross_domain_splits(corpus(), "source")
    with pytest.raises(TaskError, match="'attack_id' has one value"):
        cross_domain_splits(corpus(attacks=("gl",)), "attack_id")


def test_summary_gap_is_positive_when_cross_domain_is_worse():
    held, skipped = cross_domain_splits(corpus(), "attack_id", seed=0)
    table = summarise(held, [0.0, 0.1, 0.2], [0.3, 0.1, 0.5], "eer", False, skipped)
    assert [r["gap"] for r in table["rows"]] == pytest.approx([0.3, 0.0, 0.3])
    assert table["column"] == "attack_id" and table["cross_domain_mean"] == pytest.approx(0.3)
    assert summarise(held, [0.9], [0.6], "accuracy", True, {})["rows"][0]["gap"] == pytest.approx(0.3)


# ------------------------------------------------------------------------------------------ property
@st.composite
def spoof_corpora(draw):
    """Speakers with a language each (or none), bona fide clips, and spoofs by a subset of the attacks (some
    speakers only bona fide, some spoofs without a named attack)."""
    n_spk = draw(st.integers(3, 7))
    attacks = ["a0", "a1", "a2", "a3"][:draw(st.integers(2, 4))]
    recs = []
    for k in range(n_spk):
        spk = f"s{k}"
        lang = draw(st.sampled_from(["en", "de", "fr", None]))
        for i in range(draw(st.integers(1, 3))):
            recs.append(rec(f"/b/{spk}_{i}.wav", 0, spk, language=lang))
            for a in draw(st.lists(st.sampled_from(attacks + [None]), max_size=3, unique=True)):
                recs.append(rec(f"/s/{a}/{spk}_{i}.wav", 1, spk, attack_id=a, language=lang))
    return recs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spoof_corpora(), st.sampled_from(["attack_id", "speaker", "language"]), st.integers(0, 5))
def test_no_speaker_attack_or_language_crosses_training_and_test(recs, column, seed):
    try:
        held, skipped = cross_domain_splits(recs, column, seed=seed)
    except TaskError:
        return  # too few values, or none can be held out: refused, never split
    for h in held:
        train = h.cross.train + h.cross.validation
        assert {r.info.get(column) for r in h.cross.test} <= {h.value, None}
        assert h.value in {r.info.get(column) for r in h.cross.test}
        held_classes = {r.labels[0] for r in h.cross.test if r.info.get(column) == h.value}
        assert not any(r.info.get(column) is None and r.labels[0] in held_classes for r in h.cross.test)
        assert h.value not in {r.info.get(column) for r in train}
        assert not {r.group for r in train} & {r.group for r in h.cross.test}  # the speaker
        assert not {r.path for r in train} & {r.path for r in h.cross.test}
        assert {r.labels[0] for r in h.cross.test} == {r.labels[0] for r in h.cross.train} == {0, 1}
        assert h.in_domain.test == h.cross.test
        in_train = h.in_domain.train + h.in_domain.validation
        assert not {r.path for r in in_train} & {r.path for r in h.cross.test}
        if h.unit == "group":
            assert not {r.group for r in in_train} & {r.group for r in h.cross.test}
