"""Metrics against scikit-learn and against the ASVspoof 2019 compute_eer semantics on hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm
from sklearn import metrics as skm

from audiorep.downstream import metrics as M


def _multilabel_case(rng, n=60, c=5, ties=False):
    t = (rng.random((n, c)) < 0.3).astype(int)
    t[0] = 1  # every class has a positive
    t[1] = 0  # and a negative
    s = rng.normal(size=(n, c)) + 1.5 * t
    if ties:
        s = np.round(s, 1)
    return t, s


def test_accuracy_matches_sklearn(rng):
    s = rng.normal(size=(50, 4))
    y = rng.integers(0, 4, 50)
    assert M.accuracy(y, s) == pytest.approx(skm.accuracy_score(y, s.argmax(1)))


@pytest.mark.parametrize("ties", [False, True])
def test_mean_average_precision_matches_sklearn_macro(rng, ties):
    t, s = _multilabel_case(rng, ties=ties)
    assert M.mean_average_precision(t, s) == pytest.approx(skm.average_precision_score(t, s, average="macro"))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(-3, 3)), min_size=2, max_size=30))
def test_average_precision_with_ties_matches_sklearn(pairs):
    t = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], float)
    if not t.any():
        assert np.isnan(M.average_precision(t, s))
        return
    assert M.average_precision(t, s) == pytest.approx(skm.average_precision_score(t, s))


def test_mean_average_precision_skips_classes_without_positives(rng):
    t, s = _multilabel_case(rng)
    t[:, 2] = 0
    keep = [0, 1, 3, 4]
    assert M.mean_average_precision(t, s) == pytest.approx(skm.average_precision_score(t[:, keep], s[:, keep]))


def test_mean_average_precision_without_any_positive_raises():
    with pytest.raises(M.MetricError, match="no class has a positive"):
        M.mean_average_precision(np.zeros((3, 2)), np.ones((3, 2)))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(-3, 3)), min_size=2, max_size=30))
def test_roc_auc_with_ties_matches_sklearn(pairs):
    t = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], float)
    if t.all() or not t.any():
        assert np.isnan(M.roc_auc(t, s))
        return
    assert M.roc_auc(t, s) == pytest.approx(skm.roc_auc_score(t, s))


def test_mean_roc_auc_matches_sklearn_macro(rng):
    t, s = _multilabel_case(rng, ties=True)
    assert M.mean_roc_auc(t, s) == pytest.approx(skm.roc_auc_score(t, s, average="macro"))


def test_d_prime_is_sqrt2_times_inverse_normal_of_auc():
    assert M.d_prime(0.5) == pytest.approx(0.0)
    assert M.d_prime(0.9) == pytest.approx(np.sqrt(2) * norm.ppf(0.9))
    assert M.d_prime(1.0) == np.inf


def test_d_prime_rejects_auc_outside_unit_interval():
    with pytest.raises(M.MetricError, match=r"\[0, 1\]"):
        M.d_prime(1.2)


@pytest.mark.parametrize("average", ["macro", "micro"])
def test_f1_matches_sklearn(rng, average):
    y = rng.integers(0, 4, 80)
    p = np.where(rng.random(80) < 0.6, y, rng.integers(0, 5, 80))  # class 4 only predicted
    assert M.f1(y, p, average) == pytest.approx(skm.f1_score(y, p, average=average, zero_division=0))


def test_binary_f1_sensitivity_specificity_match_sklearn(rng):
    y = rng.integers(0, 2, 100)
    p = np.where(rng.random(100) < 0.7, y, 1 - y)
    assert M.f1(y, p, "binary") == pytest.approx(skm.f1_score(y, p))
    assert M.sensitivity(y, p) == pytest.approx(skm.recall_score(y, p, pos_label=1))
    assert M.specificity(y, p) == pytest.approx(skm.recall_score(y, p, pos_label=0))


def test_eer_on_hand_worked_asvspoof_case():
    # Sorted: .1s .2s .7b .75s .8b .9b -> frr [0,0,0,1/3,1/3,2/3,1], far [1,2/3,1/3,1/3,0,0,0]: equal at index 3.
    e, thr = M.eer([0.9, 0.8, 0.7], [0.1, 0.2, 0.75])
    assert e == pytest.approx(1 / 3)
    assert thr == pytest.approx(0.7)


def test_eer_is_zero_when_bonafide_scores_are_all_higher():
    e, thr = M.eer([1.0, 2.0], [-1.0, 0.0])
    assert e == 0.0 and thr == 0.0


def test_eer_is_one_when_bonafide_scores_are_all_lower():
    e, _ = M.eer([0.0], [1.0])
    assert e == 1.0


def test_det_curve_starts_below_every_score():
    frr, far, thr = M.det_curve([0.5, 0.6], [0.1])
    assert (frr[0], far[0]) == (0.0, 1.0)
    assert thr[0] == pytest.approx(0.1 - 0.001)


def test_eer_agrees_with_sklearn_roc_crossing(rng):
    tar, non = rng.normal(1.0, 1.0, 400), rng.normal(0.0, 1.0, 500)
    fpr, tpr, _ = skm.roc_curve(np.r_[np.ones(400), np.zeros(500)], np.r_[tar, non], drop_intermediate=False)
    i = np.argmin(np.abs((1 - tpr) - fpr))
    assert M.eer(tar, non)[0] == pytest.approx((1 - tpr[i] + fpr[i]) / 2, abs=2.5e-3)


def test_min_dcf_matches_minimum_over_sklearn_roc(rng):
    tar, non = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 200)
    fpr, tpr, _ = skm.roc_curve(np.r_[np.ones(300), np.zeros(200)], np.r_[tar, non], drop_intermediate=False)
    p, cm, cf = 0.95, 1.0, 10.0
    want = np.min(cm * p * (1 - tpr) + cf * (1 - p) * fpr) / min(cm * p, cf * (1 - p))
    assert M.min_dcf(tar, non, p, cm, cf)[0] == pytest.approx(want)


def test_min_dcf_of_trivial_system_is_at_most_one(rng):
    s = rng.normal(size=100)
    assert M.min_dcf(s[:50], s[50:])[0] <= 1.0 + 1e-12


def test_eer_from_labels_names_missing_class():
    with pytest.raises(M.MetricError, match="both bona fide"):
        M.eer_from_labels([1, 1], [0.2, 0.3])


def test_scores_with_nan_are_rejected():
    with pytest.raises(M.MetricError, match="NaN"):
        M.accuracy([0], M._as_scores([[np.nan, 1.0]]))


def test_label_count_mismatch_is_rejected():
    with pytest.raises(M.MetricError, match="one label per row"):
        M.accuracy([0, 1, 2], np.zeros((2, 3)))


def test_multilabel_report_has_map_auc_and_dprime(rng):
    t, s = _multilabel_case(rng)
    rep = M.multilabel_scores(t, s)
    assert rep["d_prime"] == pytest.approx(M.d_prime(rep["roc_auc"]))
    assert set(rep) == {"map", "roc_auc", "d_prime"}


def test_binary_report_uses_positive_class_as_bonafide(rng):
    y = np.r_[np.ones(20), np.zeros(20)].astype(int)
    logits = np.stack([-(y * 2.0 - 1), y * 2.0 - 1], 1) + 0.01 * rng.normal(size=(40, 2))
    rep = M.binary_scores(y, logits, positive=1)
    assert rep["eer"] == 0.0 and rep["accuracy"] == 1.0 and rep["roc_auc"] == 1.0
