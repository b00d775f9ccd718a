"""Scores for probes and tasks: accuracy, mAP, ROC-AUC, d', EER, min-DCF, min t-DCF, F1, sensitivity,
specificity, per-attack EER and per-group metrics (worst group, max-min gap).

Pure numpy (plus scipy's inverse normal CDF), no scikit-learn at run time; tests hold every function against
scikit-learn, and the detection metrics against brute-force computations of the ASVspoof definitions. Used by
downstream/probes.py (test scores) and downstream/tasks/ (task metrics).

Conventions:
- `scores` are real-valued, higher = more likely positive (probabilities, logits or any monotone transform).
- Multi-label targets are {0, 1} matrices `[N, C]`; macro averages skip classes without a positive (for AP)
  or without both a positive and a negative (for ROC-AUC), as sklearn would warn and as AudioSet papers do.
- Verification metrics (EER, min-DCF, min t-DCF) follow ASVspoof: the bona fide class is the target and has
  the HIGHER score; operating points and tie order as the official `compute_det_curve` (see `det_curve`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from audiorep.errors import AudiorepError


class MetricError(AudiorepError, ValueError):
    """Inputs a metric cannot score (shape mismatch, no classes to average, empty arrays)."""


HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True, "map": True, "roc_auc": True, "d_prime": True, "f1": True, "f1_macro": True,
    "sensitivity": True, "specificity": True, "eer": False, "min_dcf": False, "min_tdcf": False,
}


# ------------------------------------------------------------------------------------------- helpers
def _as_scores(scores, what: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        raise MetricError(f"{what} is empty; score at least one example.")
    if not np.all(np.isfinite(s)):
        raise MetricError(f"{what} has NaN or Inf values; check the model outputs (a diverged probe?).")
    return s


def _labels_1d(y, n: int | None = None, what: str = "labels") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise MetricError(f"{what} must be a 1-D array of class indices, got shape {y.shape}.")
    if n is not None and y.shape[0] != n:
        raise MetricError(f"{what} has {y.shape[0]} entries but the scores have {n} rows; pass one label per row.")
    return y.astype(np.int64)


def _binary_targets(y, n: int, what: str = "targets") -> np.ndarray:
    y = np.asarray(y)
    if y.shape[0] != n:
        raise MetricError(f"{what} has {y.shape[0]} entries but there are {n} scores.")
    vals = np.unique(y)
    if not np.all(np.isin(vals, (0, 1))):
        raise MetricError(f"{what} must be 0/1 (or boolean); got values {vals[:5]}.")
    return y.astype(bool)


def _multilabel(targets, scores) -> tuple[np.ndarray, np.ndarray]:
    s = _as_scores(scores)
    if s.ndim == 1:
        s = s[:, None]
    t = np.asarray(targets)
    if t.ndim == 1:
        t = t[:, None]
    if t.shape != s.shape:
        raise MetricError(f"targets {t.shape} and scores {s.shape} differ in shape; both must be [N, classes].")
    return _binary_targets(t.reshape(-1), t.size).reshape(t.shape), s


# ---------------------------------------------------------------------------------- classification
def accuracy(labels, scores) -> float:
    """Top-1 accuracy.  labels int[N], scores f[N, C] (or predicted class indices int[N]) -> float in [0, 1]."""
    s = np.asarray(scores)
    pred = s.argmax(axis=-1) if s.ndim == 2 else s.astype(np.int64)
    y = _labels_1d(labels, pred.shape[0])
    if y.size == 0:
        raise MetricError("accuracy of zero examples is undefined; pass at least one example.")
    return float(np.mean(pred == y))


def average_precision(targets, scores) -> float:
    """Average precision of one class, as sklearn.metrics.average_precision_score.

    AP = sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds, descending (tied scores form one
    threshold). targets bool[N], scores f[N] -> float; NaN when there is no positive.
    """
    s = _as_scores(scores).reshape(-1)
    t = _binary_targets(np.asarray(targets).reshape(-1), s.shape[0])
    n_pos = int(t.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, t = s[order], t[order]
    last_of_tie = np.r_[np.diff(s) != 0, True]  # index of the last example at each distinct threshold
    tp = np.cumsum(t)[last_of_tie]
    seen = (np.flatnonzero(last_of_tie) + 1).astype(np.float64)
    precision = tp / seen
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(targets, scores) -> float:
    """Macro mAP over the classes that have at least one positive.  targets {0,1}[N, C], scores f[N, C]."""
    t, s = _multilabel(targets, scores)
    aps = [average_precision(t[:, c], s[:, c]) for c in range(t.shape[1]) if t[:, c].any()]
    if not aps:
        raise MetricError("mAP: no class has a positive example; check the labels of the evaluated split.")
    return float(np.mean(aps))


def _midranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..N with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[True, np.diff(xs) != 0]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], xs.size] - 1
    avg = (first + last) / 2.0 + 1.0
    ranks = np.empty_like(avg[group])
    ranks[order] = avg[group]
    return ranks


def roc_auc(targets, scores) -> float:
    """Area under the ROC curve of one binary problem (Mann-Whitney U; ties count one half).

    targets bool[N], scores f[N] -> float; NaN when one class is absent.
    """
    s = _as_scores(scores).reshape(-1)
    t = _binary_targets(np.asarray(targets).reshape(-1), s.shape[0])
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _midranks(s)
    return float((r[t].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def mean_roc_auc(targets, scores) -> float:
    """Macro ROC-AUC over classes with both positives and negatives.  targets {0,1}[N, C], scores f[N, C]."""
    t, s = _multilabel(targets, scores)
    aucs = [roc_auc(t[:, c], s[:, c]) for c in range(t.shape[1]) if 0 < t[:, c].sum() < t.shape[0]]
    if not aucs:
        raise MetricError("ROC-AUC: no class has both positives and negatives in this split.")
    return float(np.mean(aucs))


def d_prime(auc: float) -> float:
    """Sensitivity index from ROC-AUC: sqrt(2) * Phi^-1(auc), as in the AudioSet papers. auc 1 -> +inf."""
    auc = float(auc)
    if not 0.0 <= auc <= 1.0:
        raise MetricError(f"d' needs an AUC in [0, 1], got {auc}.")
    return float(np.sqrt(2.0) * ndtri(auc))


def one_hot(labels, num_classes: int) -> np.ndarray:
    """int[N] -> f32[N, num_classes]."""
    y = _labels_1d(labels)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise MetricError(f"labels must lie in [0, {num_classes}); got range [{y.min()}, {y.max()}].")
    out = np.zeros((y.shape[0], num_classes), np.float32)
    out[np.arange(y.shape[0]), y] = 1.0
    return out


def _confusion(labels, predictions) -> tuple[np.ndarray, np.ndarray]:
    y = _labels_1d(labels, what="labels")
    p = _labels_1d(predictions, y.shape[0], what="predictions")
    if y.size == 0:
        raise MetricError("no examples to score; pass at least one.")
    return y, p


def f1(labels, predictions, average: str = "macro", positive: int = 1) -> float:
    """F1 score from class predictions, as sklearn.metrics.f1_score.

    average='binary' scores class `positive`; 'macro' averages over the classes present in labels or
    predictions; 'micro' equals accuracy for single-label data. A class with no true and no predicted
    examples scores 0 (sklearn's zero_division=0).
    """
    y, p = _confusion(labels, predictions)

    def one(c: int) -> float:
        tp = np.sum((p == c) & (y == c))
        denom = np.sum(p == c) + np.sum(y == c)
        return float(2 * tp / denom) if denom else 0.0

    if average == "binary":
        return one(positive)
    if average == "macro":
        return float(np.mean([one(int(c)) for c in np.union1d(y, p)]))
    if average == "micro":
        return float(np.mean(y == p))
    raise MetricError(f"f1 average must be 'binary', 'macro' or 'micro', got {average!r}.")


def sensitivity(labels, predictions, positive: int = 1) -> float:
    """True-positive rate (recall) of class `positive`; NaN when there is no positive example."""
    y, p = _confusion(labels, predictions)
    pos = y == positive
    return float(np.mean(p[pos] == positive)) if pos.any() else float("nan")


def specificity(labels, predictions, positive: int = 1) -> float:
    """True-negative rate: the fraction of non-`positive` examples not predicted `positive`; NaN if none."""
    y, p = _confusion(labels, predictions)
    neg = y != positive
    return float(np.mean(p[neg] != positive)) if neg.any() else float("nan")


# ------------------------------------------------------------------------------------ verification
# Conventions of the ASVspoof evaluation code (2019 `eval_metrics.py`, 2021 evaluation package): the bona fide
# class is the target and scores higher; the operating points are the cuts of the score list sorted ascending.
def det_curve(bonafide, spoof) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss and false-alarm rates at every operating point, as ASVspoof's `compute_det_curve`.

    bonafide f[T] (targets, higher = bona fide), spoof f[S] ->
    (frr f[T+S+1], far f[T+S+1], thresholds f[T+S+1]). The T+S trials are sorted by score, ascending, with
    tied scores in a fixed order: bona fide before spoof (the official code concatenates bona fide then spoof
    and sorts stably). Operating point k rejects the first k trials: frr[k] = rejected bona fide / T,
    far[k] = accepted spoof / S. thresholds[0] = the lowest score - 0.001 (accept all), thresholds[k] = the
    score of the k-th trial; for tie-free scores point k is "accept iff score > thresholds[k]". With ties a point
    may split a tied score between reject and accept, exactly as the official code does.
    """
    tar = _as_scores(bonafide, "bona fide scores").reshape(-1)
    non = _as_scores(spoof, "spoof scores").reshape(-1)
    scores = np.concatenate([tar, non])
    is_tar = np.concatenate([np.ones(tar.size), np.zeros(non.size)])
    order = np.argsort(scores, kind="mergesort")
    tar_rejected = np.cumsum(is_tar[order])
    non_rejected = np.arange(1, scores.size + 1) - tar_rejected
    frr = np.r_[0.0, tar_rejected / tar.size]
    far = np.r_[1.0, (non.size - non_rejected) / non.size]
    thresholds = np.r_[scores[order[0]] - 0.001, scores[order]]
    return frr, far, thresholds


def eer(bonafide, spoof) -> tuple[float, float]:
    """Equal error rate and its threshold, as ASVspoof's `compute_eer`: (EER in [0, 1], threshold).

    bonafide f[T], spoof f[S]: detection scores, higher = bona fide. Over the operating points of `det_curve`
    the first one minimising |frr - far| is chosen; EER = (frr + far) / 2 there and the threshold is that
    point's (see det_curve: accept iff score > threshold for tie-free scores). A perfectly separable list gives
    EER 0 at the highest spoof score; a list where every spoof outscores every bona fide trial gives 1; tied
    scores across the classes are counted pessimistically (bona fide rejected first), so an all-equal list
    gives EER 1, as the official code does.
    """
    frr, far, thr = det_curve(bonafide, spoof)
    i = int(np.argmin(np.abs(frr - far)))
    return float((frr[i] + far[i]) / 2.0), float(thr[i])


def eer_from_labels(labels, scores, bonafide: int = 1) -> tuple[float, float]:
    """EER from per-example labels and scores (label `bonafide` = target = higher score)."""
    s = _as_scores(scores).reshape(-1)
    y = _labels_1d(labels, s.shape[0])
    tar, non = s[y == bonafide], s[y != bonafide]
    if tar.size == 0 or non.size == 0:
        raise MetricError(f"EER needs both bona fide (label {bonafide}) and spoof examples; got {tar.size} "
                          f"bona fide and {non.size} spoof.")
    return eer(tar, non)


def describe_cost_model(params: dict[str, float]) -> str:
    """A cost model as one string for a result row: 'p_target=0.95,c_miss=1,c_fa=10' (keys in their order)."""
    return ",".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in params.items())


DCF_DEFAULTS: dict[str, float] = {"p_target": 0.95, "c_miss": 1.0, "c_fa": 10.0}
DCF_COST_MODEL = describe_cost_model(DCF_DEFAULTS)  # 'p_target=0.95,c_miss=1,c_fa=10'


def min_dcf(bonafide, spoof, p_target: float = 0.95, c_miss: float = 1.0, c_fa: float = 10.0) -> tuple[float, float]:
    """Minimum normalised detection cost and its threshold (the ASVspoof 5 Track 1 `compute_mindcf` model).

    DCF(t) = c_miss * p_target * P_miss(t) + c_fa * (1 - p_target) * P_fa(t), normalised by the cost of
    the best trivial system min(c_miss * p_target, c_fa * (1 - p_target)); min over the `det_curve` points
    (first on ties). Defaults (`DCF_COST_MODEL`): spoof prior 0.05, C_miss 1, C_fa 10.
    """
    if not 0.0 < p_target < 1.0:
        raise MetricError(f"p_target must lie in (0, 1), got {p_target}.")
    frr, far, thr = det_curve(bonafide, spoof)
    dcf = c_miss * p_target * frr + c_fa * (1 - p_target) * far
    i = int(np.argmin(dcf))
    return float(dcf[i] / min(c_miss * p_target, c_fa * (1 - p_target))), float(thr[i])


@dataclass(frozen=True)
class AsvErrorRates:
    """Error rates of the speaker verification (ASV) system a countermeasure is gated with, at one threshold.

    An ASV trial is accepted when its score >= threshold (ASVspoof's `obtain_asv_error_rates`).
    p_miss: targets rejected; p_fa: non-targets (zero-effort impostors) accepted; p_miss_spoof: spoofs
    rejected (p_fa_spoof = 1 - p_miss_spoof: spoofs accepted).
    """

    threshold: float
    p_miss: float
    p_fa: float
    p_miss_spoof: float

    @property
    def p_fa_spoof(self) -> float:
        return 1.0 - self.p_miss_spoof


def asv_error_rates(target, nontarget, spoof, threshold: float | None = None) -> AsvErrorRates:
    """ASV error rates at `threshold` (default: the ASV's own EER threshold of target vs non-target, as the
    ASVspoof evaluation fixes it).  target f[T], nontarget f[N], spoof f[S]: ASV scores, higher = target."""
    tar = _as_scores(target, "ASV target scores").reshape(-1)
    non = _as_scores(nontarget, "ASV non-target scores").reshape(-1)
    spf = _as_scores(spoof, "ASV spoof scores").reshape(-1)
    if threshold is None:
        threshold = eer(tar, non)[1]
    return AsvErrorRates(float(threshold), float(np.mean(tar < threshold)), float(np.mean(non >= threshold)),
                         float(np.mean(spf < threshold)))


# The ASVspoof 2019 evaluation plan's priors (P_spoof 0.05, the rest split 99:1 target:non-target) with the
# revised cost model of Kinnunen et al., TASLP 2020 (the ASVspoof 2021 ranking and the 2019 v2 package default)
# and the legacy one of Kinnunen et al., Odyssey 2018 (the ASVspoof 2019 challenge itself).
TDCF_COST_MODELS: dict[str, dict[str, float]] = {
    "revised": {"p_spoof": 0.05, "p_tar": 0.95 * 0.99, "p_non": 0.95 * 0.01,
                "c_miss": 1.0, "c_fa": 10.0, "c_fa_spoof": 10.0},
    "legacy": {"p_spoof": 0.05, "p_tar": 0.95 * 0.99, "p_non": 0.95 * 0.01,
               "c_miss_asv": 1.0, "c_fa_asv": 10.0, "c_miss_cm": 1.0, "c_fa_cm": 10.0},
}


def tdcf_cost_model(form: str = "revised", overrides: dict[str, float] | None = None) -> dict[str, float]:
    """The t-DCF cost model of `form` ('revised' | 'legacy') with `overrides` applied, checked: known keys,
    non-negative costs, priors >= 0 summing to 1."""
    if form not in TDCF_COST_MODELS:
        raise MetricError(f"t-DCF form must be one of {sorted(TDCF_COST_MODELS)}, got {form!r}.")
    cm = dict(TDCF_COST_MODELS[form])
    unknown = set(overrides or {}) - set(cm)
    if unknown:
        raise MetricError(f"unknown {form} t-DCF cost model keys {sorted(unknown)}; the keys are {list(cm)}.")
    cm.update({k: float(v) for k, v in (overrides or {}).items()})
    if any(v < 0 for v in cm.values()):
        raise MetricError(f"t-DCF costs and priors must be non-negative, got {describe_cost_model(cm)}.")
    if abs(cm["p_spoof"] + cm["p_tar"] + cm["p_non"] - 1.0) > 1e-10:
        raise MetricError(f"t-DCF priors p_spoof + p_tar + p_non must sum to 1, got {describe_cost_model(cm)}.")
    return cm


def tdcf_curve(bonafide_cm, spoof_cm, asv: AsvErrorRates, *, form: str = "revised",
               cost_model: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalised tandem detection cost at every countermeasure (CM) operating point, with the ASV fixed.

    bonafide_cm f[T], spoof_cm f[S]: CM scores, higher = bona fide; asv: the ASV's error rates
    (`asv_error_rates`). Returns (t-DCF f[T+S+1], CM thresholds f[T+S+1]) over the `det_curve` points.
      revised (Kinnunen et al. 2020): t-DCF(s) = C0 + C1 Pmiss_cm(s) + C2 Pfa_cm(s) with
        C0 = p_tar c_miss Pmiss_asv + p_non c_fa Pfa_asv, C1 = p_tar c_miss - C0, C2 = p_spoof c_fa_spoof
        Pfa_spoof_asv; divided by the cost of the better of the two trivial CMs, C0 + min(C1, C2).
      legacy (Kinnunen et al. 2018, the ASVspoof 2019 evaluation plan): t-DCF(s) = C1 Pmiss_cm(s) + C2 Pfa_cm(s)
        with C1 = p_tar (c_miss_cm - c_miss_asv Pmiss_asv) - p_non c_fa_asv Pfa_asv,
        C2 = c_fa_cm p_spoof (1 - Pmiss_spoof_asv); divided by min(C1, C2).
    A value > 1 means the tandem system would do better without the CM.
    Raises MetricError for hard decisions (fewer than 3 distinct CM scores, which the official code refuses
    too), negative weights (ASV error rates that cannot come from one threshold), or an undefined
    normalisation (the ASV alone already has zero cost to remove).
    """
    cm = tdcf_cost_model(form, cost_model)
    tar = _as_scores(bonafide_cm, "bona fide CM scores").reshape(-1)
    non = _as_scores(spoof_cm, "spoof CM scores").reshape(-1)
    if np.unique(np.concatenate([tar, non])).size < 3:
        raise MetricError("t-DCF needs soft countermeasure scores (at least 3 distinct values), not hard "
                          "decisions; pass the probe's scores, not its predicted classes.")
    frr, far, thr = det_curve(tar, non)
    if form == "revised":
        c0 = cm["p_tar"] * cm["c_miss"] * asv.p_miss + cm["p_non"] * cm["c_fa"] * asv.p_fa
        c1 = cm["p_tar"] * cm["c_miss"] - c0
        c2 = cm["p_spoof"] * cm["c_fa_spoof"] * asv.p_fa_spoof
        floor = c0 + min(c1, c2)
    else:
        c0 = 0.0
        c1 = cm["p_tar"] * (cm["c_miss_cm"] - cm["c_miss_asv"] * asv.p_miss) - cm["p_non"] * cm["c_fa_asv"] * asv.p_fa
        c2 = cm["c_fa_cm"] * cm["p_spoof"] * (1.0 - asv.p_miss_spoof)
        floor = min(c1, c2)
    if min(c0, c1, c2) < 0:
        raise MetricError(f"t-DCF weights are negative (C0={c0:.4g}, C1={c1:.4g}, C2={c2:.4g}); the ASV error rates "
                          f"(Pmiss={asv.p_miss:.3g}, Pfa={asv.p_fa:.3g}) look wrong: are target and non-target "
                          "ASV scores swapped?")
    if floor <= 0:
        raise MetricError(f"{form} t-DCF is undefined here: a trivial CM already costs 0 (C0={c0:.4g}, C1={c1:.4g}, "
                          f"C2={c2:.4g}; e.g. the ASV rejects every spoof). Use EER or min-DCF for these scores.")
    return (c0 + c1 * frr + c2 * far) / floor, thr


def min_tdcf(bonafide_cm, spoof_cm, asv_target, asv_nontarget, asv_spoof, *, form: str = "revised",
             cost_model: dict[str, float] | None = None, asv_threshold: float | None = None) -> tuple[float, float]:
    """Minimum normalised t-DCF and its CM threshold (first minimum), the ASVspoof 2019/2021 tandem metric.

    bonafide_cm f[T], spoof_cm f[S]: countermeasure scores (higher = bona fide); asv_target, asv_nontarget,
    asv_spoof: the ASV system's scores of target, non-target and spoof trials (e.g. the organisers' ASV score
    file), whose error rates are taken at `asv_threshold` (default: the ASV EER threshold). form: 'revised'
    (default, Kinnunen et al. 2020; ASVspoof 2021) or 'legacy' (Kinnunen et al. 2018; the 2019 challenge);
    cost_model: overrides of `TDCF_COST_MODELS[form]`. See `tdcf_curve`.
    """
    asv = asv_error_rates(asv_target, asv_nontarget, asv_spoof, asv_threshold)
    curve, thr = tdcf_curve(bonafide_cm, spoof_cm, asv, form=form, cost_model=cost_model)
    i = int(np.argmin(curve))
    return float(curve[i]), float(thr[i])


def tdcf_cost_model_name(form: str = "revised", cost_model: dict[str, float] | None = None) -> str:
    """'form=revised,p_spoof=0.05,...': the t-DCF cost model as recorded in a result row."""
    return describe_cost_model({"form": form, **tdcf_cost_model(form, cost_model)})


def detection_costs(bonafide, spoof, asv: tuple | None = None, *, form: str = "revised") -> dict:
    """The detection cost of a CM with its cost model named: min t-DCF when the ASV scores are given
    (asv = (target, nontarget, spoof) ASV scores), else min-DCF with the `DCF_COST_MODEL` defaults.

    -> {'min_tdcf', 'tdcf_threshold', 'tdcf_cost_model'} or {'min_dcf', 'dcf_threshold', 'dcf_cost_model'}.
    """
    if asv is not None:
        value, thr = min_tdcf(bonafide, spoof, *asv, form=form)
        return {"min_tdcf": value, "tdcf_threshold": thr, "tdcf_cost_model": tdcf_cost_model_name(form)}
    value, thr = min_dcf(bonafide, spoof, **DCF_DEFAULTS)
    return {"min_dcf": value, "dcf_threshold": thr, "dcf_cost_model": DCF_COST_MODEL}


# The cost model behind each cost metric a report may hold (reports are numbers only; rows name the model).
COST_MODELS: dict[str, str] = {"min_dcf": DCF_COST_MODEL, "min_tdcf": tdcf_cost_model_name("revised")}


def bonafide_score(scores, positive: int = 1) -> np.ndarray:
    """One detection score per example, higher = class `positive` (bona fide).

    scores f[N, 2] (class probabilities or logits) -> scores[:, positive] - scores[:, 1 - positive];
    f[N] is taken as the score of `positive` already. -> f64[N].
    """
    s = _as_scores(scores)
    if s.ndim == 2 and s.shape[1] == 2:
        if positive not in (0, 1):
            raise MetricError(f"positive must be 0 or 1 for 2-class scores, got {positive}.")
        return s[:, positive] - s[:, 1 - positive]
    if s.ndim == 1:
        return s
    raise MetricError(f"detection scores must be f[N] or f[N, 2], got shape {s.shape}.")


# --------------------------------------------------------------------------------- attacks and groups
def per_attack_eer(labels, scores, attacks, bonafide: int = 1) -> dict[str, float]:
    """EER of every attack: all bona fide trials against the spoofs of that attack (ASVspoof's per-attack
    breakdown). labels int[N], scores f[N] or f[N, 2] (see `bonafide_score`), attacks [N] attack ids (the
    entries of bona fide rows are ignored) -> {attack id: EER}, in attack order."""
    s = bonafide_score(scores, bonafide)
    y = _labels_1d(labels, s.shape[0])
    a = np.asarray(attacks).astype(str).reshape(-1)
    if a.shape[0] != s.shape[0]:
        raise MetricError(f"attacks has {a.shape[0]} entries but there are {s.shape[0]} scores; pass one per row.")
    tar = s[y == bonafide]
    if tar.size == 0:
        raise MetricError(f"per-attack EER needs bona fide examples (label {bonafide}); there are none.")
    spoof = y != bonafide
    return {atk: eer(tar, s[spoof & (a == atk)])[0] for atk in sorted(set(a[spoof].tolist()))}


THRESHOLD_FREE = ("eer", "min_dcf", "roc_auc")  # per-group metrics of the detection score
DECISION_METRICS = ("accuracy", "f1", "f1_macro", "sensitivity", "specificity")  # of predicted classes


def per_group(labels, scores, groups, metric: str = "eer", positive: int = 1, min_per_class: int = 1) -> dict:
    """A metric in every group (speaker, gender, language, source...), the worst group and the max-min gap.

    labels int[N]; scores f[N, C] class scores (argmax = the prediction), f[N] detection scores (for the
    threshold-free metrics eer / min_dcf / roc_auc) or int[N] predicted classes (decision metrics accuracy,
    f1, f1_macro, sensitivity, specificity); groups [N] group ids (None or '' = no group: left out).
    positive: the bona fide / positive class.
    A group that cannot be scored (eer, min_dcf, roc_auc: fewer than `min_per_class` examples of either
    class; sensitivity / specificity: no positive / negative; the rest: no examples) is skipped with its
    reason, never an error. "Worst" is the highest value of a lower-is-better metric (EER, min-DCF) and the
    lowest of the others. Returns
      {'metric', 'per_group': {group: value}, 'worst_group': group | None, 'worst': float (NaN if no group
       scored), 'gap': max - min (NaN if none), 'counts': {group: n}, 'skipped': {group: reason},
       'ungrouped': rows without a group}.
    """
    if metric not in THRESHOLD_FREE + DECISION_METRICS:
        raise MetricError(f"per-group metric must be one of {list(THRESHOLD_FREE + DECISION_METRICS)}, "
                          f"got {metric!r}.")
    raw = np.asarray(scores)
    y = _labels_1d(labels, raw.shape[0])
    g = np.array(["" if v is None else str(v) for v in np.asarray(groups, dtype=object).reshape(-1)])
    if g.shape[0] != y.shape[0]:
        raise MetricError(f"groups has {g.shape[0]} entries but there are {y.shape[0]} labels; pass one per row.")
    if metric in THRESHOLD_FREE:
        det = bonafide_score(raw, positive)
    elif raw.ndim == 2:
        pred = _as_scores(raw).argmax(-1)
    elif raw.ndim == 1 and np.all(np.mod(raw, 1) == 0):
        pred = raw.astype(np.int64)
    else:
        raise MetricError(f"{metric} per group needs class scores f[N, C] or predicted classes int[N]; got "
                          f"{raw.dtype}{list(raw.shape)} (detection scores have no decision threshold).")
    values, counts, skipped = {}, {}, {}
    for grp in sorted(set(g.tolist()) - {""}):
        m = g == grp
        counts[grp] = int(m.sum())
        yg = y[m]
        n_pos, n_neg = int(np.sum(yg == positive)), int(np.sum(yg != positive))
        if metric in THRESHOLD_FREE:
            if min(n_pos, n_neg) < min_per_class:
                skipped[grp] = (f"{metric} needs at least {min_per_class} example(s) of each class; the group has "
                                f"{n_pos} of class {positive} and {n_neg} of the others")
                continue
            sg = det[m]
            if metric == "eer":
                values[grp] = eer(sg[yg == positive], sg[yg != positive])[0]
            elif metric == "min_dcf":
                values[grp] = min_dcf(sg[yg == positive], sg[yg != positive])[0]
            else:
                values[grp] = roc_auc(yg == positive, sg)
            continue
        if (metric == "sensitivity" and n_pos == 0) or (metric == "specificity" and n_neg == 0):
            skipped[grp] = f"{metric} needs {'a positive' if metric == 'sensitivity' else 'a negative'} example " \
                           f"(class {'' if metric == 'sensitivity' else 'other than '}{positive}); the group has none"
            continue
        pg = pred[m]
        if metric == "accuracy":
            values[grp] = float(np.mean(pg == yg))
        elif metric == "f1":
            values[grp] = f1(yg, pg, "binary", positive)
        elif metric == "f1_macro":
            values[grp] = f1(yg, pg, "macro")
        elif metric == "sensitivity":
            values[grp] = sensitivity(yg, pg, positive)
        else:
            values[grp] = specificity(yg, pg, positive)
    if values:
        pick = min if HIGHER_IS_BETTER.get(metric, True) else max
        worst_group = pick(values, key=lambda k: values[k])  # first in group order on ties
        worst, gap = values[worst_group], max(values.values()) - min(values.values())
    else:
        worst_group, worst, gap = None, float("nan"), float("nan")
    return {"metric": metric, "per_group": values, "worst_group": worst_group, "worst": float(worst),
            "gap": float(gap), "counts": counts, "skipped": skipped, "ungrouped": int(np.sum(g == ""))}


# -------------------------------------------------------------------------------------- by name
def multiclass_scores(labels, scores) -> dict[str, float]:
    """The standard report for single-label tasks: accuracy, macro F1, macro mAP and ROC-AUC (one-vs-rest)."""
    s = _as_scores(scores)
    y = _labels_1d(labels, s.shape[0])
    hot = one_hot(y, s.shape[1])
    out = {"accuracy": accuracy(y, s), "f1_macro": f1(y, s.argmax(-1), "macro"),
           "map": mean_average_precision(hot, s)}
    try:
        out["roc_auc"] = mean_roc_auc(hot, s)
    except MetricError:
        pass
    return out


def multilabel_scores(targets, scores) -> dict[str, float]:
    """The AudioSet report: macro mAP, macro ROC-AUC and d' of that AUC."""
    auc = mean_roc_auc(targets, scores)
    return {"map": mean_average_precision(targets, scores), "roc_auc": auc, "d_prime": d_prime(auc)}


def binary_scores(labels, scores, positive: int = 1, asv: tuple | None = None) -> dict[str, float]:
    """Detection report for 2-class tasks (`positive` = bona fide): EER, min-DCF, ROC-AUC, F1, sens./spec.;
    min t-DCF too when `asv` = (target, nontarget, spoof) ASV scores is given.

    scores f[N, 2] (class probabilities or logits) or f[N] (score of `positive`). Numbers only (probes average
    reports): the cost model behind min_dcf / min_tdcf is `COST_MODELS[name]`, which result rows record.
    """
    s = _as_scores(scores)
    y = _labels_1d(labels, s.shape[0])
    pos_score = bonafide_score(s, positive)
    pred = s.argmax(-1) if s.ndim == 2 else np.where(s > 0.5, positive, 1 - positive)
    e, _ = eer_from_labels(y, pos_score, bonafide=positive)
    tar, non = pos_score[y == positive], pos_score[y != positive]
    out = {"eer": e, "min_dcf": min_dcf(tar, non, **DCF_DEFAULTS)[0], "roc_auc": roc_auc(y == positive, pos_score),
           "accuracy": float(np.mean(pred == y)), "f1": f1(y, pred, "binary", positive),
           "sensitivity": sensitivity(y, pred, positive), "specificity": specificity(y, pred, positive)}
    if asv is not None:
        out["min_tdcf"] = min_tdcf(tar, non, *asv)[0]
    return out


REPORTS: dict[str, Callable[..., dict[str, float]]] = {
    "multiclass": multiclass_scores, "multilabel": multilabel_scores, "binary": binary_scores,
}
