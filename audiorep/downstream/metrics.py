"""Scores for probes and tasks: accuracy, mAP, ROC-AUC, d', EER, min-DCF, F1, sensitivity, specificity.

Pure numpy (plus scipy's inverse normal CDF), no scikit-learn at run time; tests hold every function
against scikit-learn and against the ASVspoof 2019 `compute_eer` semantics. Used by downstream/probes.py
(test scores) and downstream/tasks/ (task metrics).

Conventions:
- `scores` are real-valued, higher = more likely positive (probabilities, logits or any monotone transform).
- Multi-label targets are {0, 1} matrices `[N, C]`; macro averages skip classes without a positive (for AP)
  or without both a positive and a negative (for ROC-AUC), as sklearn would warn and as AudioSet papers do.
- Verification metrics (EER, min-DCF) follow ASVspoof: the bona fide class is the target and has the HIGHER
  score.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import ndtri

from audiorep.errors import AudiorepError


class MetricError(AudiorepError, ValueError):
    """Inputs a metric cannot score (shape mismatch, no classes to average, empty arrays)."""


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
def det_curve(bonafide, spoof) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss and false-alarm rates at every threshold, ASVspoof 2019 `compute_det_curve` semantics.

    bonafide f[T] (targets, higher = bona fide), spoof f[S] ->
    (frr f[T+S+1], far f[T+S+1], thresholds f[T+S+1]). Entry 0 is a threshold just below every score
    (frr 0, far 1); entry i > 0 rejects the i lowest scores (stable order, bona fide first on ties).
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
    """Equal error rate and its threshold: (EER in [0, 1], threshold), ASVspoof `compute_eer` semantics.

    The operating point minimises |frr - far| (first on ties); EER = their mean there.
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


def min_dcf(bonafide, spoof, p_target: float = 0.95, c_miss: float = 1.0, c_fa: float = 10.0) -> tuple[float, float]:
    """Minimum normalised detection cost and its threshold (ASVspoof 5 Track 1 defaults).

    DCF(t) = c_miss * p_target * P_miss(t) + c_fa * (1 - p_target) * P_fa(t), normalised by the cost of
    the best trivial system min(c_miss * p_target, c_fa * (1 - p_target)); min over the DET thresholds.
    Defaults: spoof prior 0.05, C_miss 1, C_fa 10.
    """
    if not 0.0 < p_target < 1.0:
        raise MetricError(f"p_target must lie in (0, 1), got {p_target}.")
    frr, far, thr = det_curve(bonafide, spoof)
    dcf = c_miss * p_target * frr + c_fa * (1 - p_target) * far
    i = int(np.argmin(dcf))
    return float(dcf[i] / min(c_miss * p_target, c_fa * (1 - p_target))), float(thr[i])


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


def binary_scores(labels, scores, positive: int = 1) -> dict[str, float]:
    """Detection report for 2-class tasks (`positive` = bona fide): EER, min-DCF, ROC-AUC, F1, sens./spec.

    scores f[N, 2] (class probabilities or logits) or f[N] (score of `positive`).
    """
    s = _as_scores(scores)
    y = _labels_1d(labels, s.shape[0])
    if s.ndim == 2:
        pos_score = s[:, positive] - s[:, 1 - positive]
        pred = s.argmax(-1)
    else:
        pos_score = s
        pred = np.where(s > 0.5, positive, 1 - positive)
    e, _ = eer_from_labels(y, pos_score, bonafide=positive)
    tar, non = pos_score[y == positive], pos_score[y != positive]
    return {"eer": e, "min_dcf": min_dcf(tar, non)[0], "roc_auc": roc_auc(y == positive, pos_score),
            "accuracy": float(np.mean(pred == y)), "f1": f1(y, pred, "binary", positive),
            "sensitivity": sensitivity(y, pred, positive), "specificity": specificity(y, pred, positive)}


HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True, "map": True, "roc_auc": True, "d_prime": True, "f1": True, "f1_macro": True,
    "sensitivity": True, "specificity": True, "eer": False, "min_dcf": False,
}

REPORTS: dict[str, Callable[..., dict[str, float]]] = {
    "multiclass": multiclass_scores, "multilabel": multilabel_scores, "binary": binary_scores,
}
