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


# ------------------------------------------------------------------ detection metrics against brute force
# Independent transcriptions of the definitions: plain Python loops over every operating point (EER, t-DCF),
# numpy over every real threshold (tie-free lists), and the tandem cost written out term by term.
def _points(bona, spoof):
    """(frr, far, threshold) of every cut of the trials sorted by score, tied scores bona fide first."""
    trials = sorted([(float(s), 0) for s in bona] + [(float(s), 1) for s in spoof])
    out = [(0.0, 1.0, trials[0][0] - 0.001)]
    for k in range(1, len(trials) + 1):
        rejected = trials[:k]
        frr = sum(1 for _, c in rejected if c == 0) / len(bona)
        far = sum(1 for _, c in trials[k:] if c == 1) / len(spoof)
        out.append((frr, far, trials[k - 1][0]))
    return out


def _brute_eer(bona, spoof):
    pts = _points(bona, spoof)
    best = min(range(len(pts)), key=lambda k: (abs(pts[k][0] - pts[k][1]), k))
    return (pts[best][0] + pts[best][1]) / 2, pts[best][2]


def _threshold_eer(bona, spoof):
    """EER over every real threshold t (accept iff score > t), numpy; equals the cut semantics for tie-free lists."""
    t = np.r_[min(bona.min(), spoof.min()) - 1.0, np.sort(np.r_[bona, spoof])]
    frr = (bona[None, :] <= t[:, None]).mean(1)
    far = (spoof[None, :] > t[:, None]).mean(1)
    i = np.argmin(np.abs(frr - far))
    return (frr[i] + far[i]) / 2


def _brute_asv(tar, non, spoof):
    thr = _brute_eer(tar, non)[1]
    return (thr, sum(s < thr for s in tar) / len(tar), sum(s >= thr for s in non) / len(non),
            sum(s < thr for s in spoof) / len(spoof))


def _tandem_cost(pm_cm, pfa_cm, pm_asv, pfa_asv, pm_spoof_asv):
    """Expected cost of CM -> ASV at one CM operating point, each error path written out: a target lost by the CM
    or by the ASV (cost 1), a non-target passed by both (10), a spoof passed by both (10); priors 0.05 spoof and
    0.95 split 99:1 target:non-target (the costs of the legacy and revised models coincide here)."""
    p_spoof, p_tar, p_non = 0.05, 0.95 * 0.99, 0.95 * 0.01
    return (1 * p_tar * (pm_cm + (1 - pm_cm) * pm_asv) + 10 * p_non * (1 - pm_cm) * pfa_asv
            + 10 * p_spoof * pfa_cm * (1 - pm_spoof_asv))


def _brute_min_tdcf(form, bona, spoof, tar, non, spf):
    """Revised: tandem cost / cost of the better trivial CM. Legacy: the same after removing the cost of an
    error-free CM (the Odyssey 2018 form keeps only the CM-dependent terms). None when undefined."""
    _, pm, pfa, pms = _brute_asv(tar, non, spf)
    cost = [_tandem_cost(frr, far, pm, pfa, pms) for frr, far, _ in _points(bona, spoof)]
    perfect = _tandem_cost(0, 0, pm, pfa, pms)
    trivial = min(_tandem_cost(0, 1, pm, pfa, pms), _tandem_cost(1, 0, pm, pfa, pms))
    base = 0.0 if form == "revised" else perfect
    if trivial - base <= 1e-15:
        return None
    norm = [(c - base) / (trivial - base) for c in cost]
    k = min(range(len(norm)), key=lambda i: (norm[i], i))
    return norm[k], _points(bona, spoof)[k][2]


_score_lists = st.lists(st.integers(-4, 4), min_size=1, max_size=14)  # small integers: many ties


@settings(max_examples=150, deadline=None)
@given(_score_lists, _score_lists)
def test_eer_and_threshold_equal_brute_force_over_every_operating_point(bona, spoof):
    e, thr = M.eer(bona, spoof)
    want_e, want_thr = _brute_eer(bona, spoof)
    assert e == pytest.approx(want_e, abs=1e-12) and thr == pytest.approx(want_thr)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=30, unique=True), st.data())
def test_eer_of_tie_free_scores_equals_the_best_real_threshold(scores, data):
    n_bona = data.draw(st.integers(1, len(scores) - 1))
    bona, spoof = np.array(scores[:n_bona]), np.array(scores[n_bona:])
    assert M.eer(bona, spoof)[0] == pytest.approx(_threshold_eer(bona, spoof), abs=1e-12)


def test_eer_of_a_perfectly_separable_list_is_zero_at_the_highest_spoof_score():
    bona, spoof = [3.0, 5.0, 4.5], [-1.0, 2.0, 0.5, 1.0]
    assert M.eer(bona, spoof) == (0.0, 2.0) == _brute_eer(bona, spoof)


def test_eer_with_ties_across_classes_rejects_tied_bonafide_first():
    # Sorted: 0s 1b 1b 1s 2b 3b: cuts give (frr, far) (0,1) (0,.5) (.25,.5) (.5,.5) ...: EER .5 at threshold 1, as the
    # official code (bona fide ahead of spoof on a tie); real thresholds alone would give (0,.5) or (.5,0).
    assert M.eer([1, 1, 2, 3], [0, 1]) == (0.5, 1.0)


def test_eer_of_constant_scores_is_one_as_the_official_code_gives():
    assert M.eer([0.5, 0.5], [0.5, 0.5, 0.5])[0] == 1.0


_asv_target = st.lists(st.integers(1, 6), min_size=1, max_size=8)
_asv_other = st.lists(st.integers(-4, 3), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["revised", "legacy"]), _score_lists, _score_lists, _asv_target, _asv_other, _score_lists)
def test_min_tdcf_equals_brute_force_tandem_cost(form, bona, spoof, tar, non, spf):
    if len(set(bona + spoof)) < 3:
        with pytest.raises(M.MetricError, match="soft"):
            M.min_tdcf(bona, spoof, tar, non, spf, form=form)
        return
    want = _brute_min_tdcf(form, bona, spoof, tar, non, spf)
    if want is None:
        with pytest.raises(M.MetricError, match="undefined"):
            M.min_tdcf(bona, spoof, tar, non, spf, form=form)
        return
    value, thr = M.min_tdcf(bona, spoof, tar, non, spf, form=form)
    assert value == pytest.approx(want[0], rel=1e-9, abs=1e-12)
    curve, thresholds = M.tdcf_curve(bona, spoof, M.asv_error_rates(tar, non, spf), form=form)
    assert thr in thresholds[np.isclose(curve, curve.min(), rtol=1e-12, atol=1e-15)]


def test_asv_error_rates_accept_at_or_above_the_asv_eer_threshold():
    # ASV EER of tar [2, 3] vs non [0, 2]: sorted 0n 2t 2n 3t -> cut 1 (frr 0, far .5) vs cut 2 (.5, .5): threshold 2.
    r = M.asv_error_rates([2, 3], [0, 2], [1, 2, 5, 6])
    assert (r.threshold, r.p_miss, r.p_fa, r.p_miss_spoof, r.p_fa_spoof) == (2.0, 0.0, 0.5, 0.25, 0.75)


def test_min_tdcf_on_a_hand_worked_case():
    # ASV: Pmiss 0, Pfa 0.5, Pfa_spoof 0.75 (above). Revised: C0 = .0095*10*.5 = .0475, C1 = .9405 - .0475 = .893,
    # C2 = .05*10*.75 = .375, floor C0 + C2 = .4225. CM bona [3, 4], spoof [1, 2, 3.5]: the cut after 2 gives
    # Pmiss 0, Pfa 1/3 -> (.0475 + .375/3) / .4225 = .172500 / .4225.
    value, thr = M.min_tdcf([3, 4], [1, 2, 3.5], [2, 3], [0, 2], [1, 2, 5, 6])
    assert value == pytest.approx((0.0475 + 0.375 / 3) / 0.4225) and thr == 2.0
    # Legacy: C1 = .9405*(1 - 0) - .0095*10*.5 = .893, C2 = 10*.05*(1 - .25) = .375 -> (.375/3) / .375 = 1/3.
    assert M.min_tdcf([3, 4], [1, 2, 3.5], [2, 3], [0, 2], [1, 2, 5, 6], form="legacy")[0] == pytest.approx(1 / 3)


def test_tdcf_cost_models_are_the_asvspoof_2019_priors_and_costs():
    for form in ("revised", "legacy"):
        cm = M.TDCF_COST_MODELS[form]
        assert (cm["p_spoof"], cm["p_tar"], cm["p_non"]) == (0.05, 0.95 * 0.99, 0.95 * 0.01)
    assert M.tdcf_cost_model_name() == "form=revised,p_spoof=0.05,p_tar=0.9405,p_non=0.0095,c_miss=1,c_fa=10," \
                                       "c_fa_spoof=10"


def test_tdcf_cost_model_rejects_priors_that_do_not_sum_to_one():
    with pytest.raises(M.MetricError, match="sum to 1"):
        M.tdcf_cost_model("revised", {"p_spoof": 0.5})


@pytest.mark.parametrize("form", ["revised", "legacy"])
def test_min_tdcf_rejects_swapped_asv_scores(form):
    # At threshold 3 every target is rejected and every non-target accepted: C1 < 0 in both forms.
    with pytest.raises(M.MetricError, match="swapped"):
        M.min_tdcf([3, 4], [1, 2, 3.5], [0, 1], [5, 6], [1, 2], form=form, asv_threshold=3.0)


def test_detection_costs_name_their_cost_model():
    plain = M.detection_costs([3, 4], [1, 2, 3.5])
    assert plain["dcf_cost_model"] == "p_target=0.95,c_miss=1,c_fa=10"
    assert plain["min_dcf"] == pytest.approx(M.min_dcf([3, 4], [1, 2, 3.5])[0])
    tandem = M.detection_costs([3, 4], [1, 2, 3.5], asv=([2, 3], [0, 2], [1, 2, 5, 6]))
    assert tandem["tdcf_cost_model"].startswith("form=revised,") and "min_dcf" not in tandem
    assert tandem["min_tdcf"] == pytest.approx((0.0475 + 0.375 / 3) / 0.4225)


def test_binary_report_adds_min_tdcf_when_asv_scores_are_given():
    y = np.array([1, 1, 0, 0, 0])
    s = np.array([3, 4, 1, 2, 3.5])
    rep = M.binary_scores(y, s, asv=([2, 3], [0, 2], [1, 2, 5, 6]))
    assert rep["min_tdcf"] == pytest.approx((0.0475 + 0.375 / 3) / 0.4225)
    assert set(M.COST_MODELS) == {"min_dcf", "min_tdcf"} and not M.HIGHER_IS_BETTER["min_tdcf"]


@settings(max_examples=60, deadline=None)
@given(_score_lists, _score_lists)
def test_min_dcf_equals_brute_force_over_every_operating_point(bona, spoof):
    costs = [0.95 * frr + 10 * 0.05 * far for frr, far, _ in _points(bona, spoof)]
    assert M.min_dcf(bona, spoof)[0] == pytest.approx(min(costs) / min(0.95, 0.5))


# ---------------------------------------------------------------------------------- attacks and groups
def test_per_attack_eer_scores_all_bonafide_against_each_attack():
    labels = [1, 1, 1, 0, 0, 0, 0]
    scores = [0.9, 0.8, 0.3, 0.1, 0.2, 0.85, 0.95]
    attacks = ["-", "-", "-", "A01", "A01", "A02", "A02"]
    got = M.per_attack_eer(labels, scores, attacks)
    assert list(got) == ["A01", "A02"]
    assert got["A01"] == M.eer([0.9, 0.8, 0.3], [0.1, 0.2])[0] == 0.0
    assert got["A02"] == pytest.approx(_brute_eer([0.9, 0.8, 0.3], [0.85, 0.95])[0])


def test_per_attack_eer_takes_two_column_scores_with_the_bonafide_column():
    logits = np.array([[0.0, 2.0], [0.0, 1.0], [3.0, 0.0], [0.0, 1.5]])
    got = M.per_attack_eer([1, 1, 0, 0], logits, ["", "", "A", "B"], bonafide=1)
    # Bona fide scores 2, 1; B scores 1.5: cuts (0,1) (.5,1) (.5,0) (1,0), the first closest pair (.5,1) -> .75.
    assert got == {"A": 0.0, "B": 0.75}


def test_per_group_on_a_hand_checked_case():
    # Speaker a: bona [.9, .8] vs spoof [.1] -> EER 0. Speaker b: bona [.4] vs spoof [.6, .2] -> sorted .2s .4b .6s:
    # cuts (0,1) (0,.5) (1,.5) (1,0) -> EER .25. Speaker c: bona fide only -> skipped.
    labels = [1, 1, 0, 1, 0, 0, 1]
    scores = [0.9, 0.8, 0.1, 0.4, 0.6, 0.2, 0.7]
    groups = ["a", "a", "a", "b", "b", "b", "c"]
    got = M.per_group(labels, scores, groups, metric="eer")
    assert got["per_group"] == {"a": 0.0, "b": 0.25}
    assert (got["worst_group"], got["worst"], got["gap"]) == ("b", 0.25, 0.25)
    assert got["counts"] == {"a": 3, "b": 3, "c": 1}
    assert "c" in got["skipped"] and "0 of the others" in got["skipped"]["c"]


def test_per_group_accuracy_takes_the_lowest_as_worst():
    labels = [0, 1, 1, 0, 1]
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3], [0.1, 0.9]])
    got = M.per_group(labels, probs, ["f", "f", "m", "m", "m"], metric="accuracy")
    assert got["per_group"] == {"f": 1.0, "m": pytest.approx(2 / 3)}
    assert got["worst_group"] == "m" and got["gap"] == pytest.approx(1 / 3)


def test_per_group_with_no_scorable_group_reports_nan_instead_of_failing():
    got = M.per_group([1, 1, 0], [0.3, 0.2, 0.1], ["x", "x", "y"], metric="eer")
    assert got["per_group"] == {} and got["worst_group"] is None and np.isnan(got["gap"])
    assert set(got["skipped"]) == {"x", "y"}


def test_per_group_leaves_rows_without_a_group_out():
    got = M.per_group([1, 0, 1, 0], [0.9, 0.1, 0.2, 0.8], ["a", "a", None, ""], metric="eer")
    assert got["counts"] == {"a": 2} and got["ungrouped"] == 2


def test_per_group_refuses_decision_metrics_on_detection_scores():
    with pytest.raises(M.MetricError, match="predicted classes"):
        M.per_group([1, 0], [0.7, 0.2], ["a", "a"], metric="accuracy")
