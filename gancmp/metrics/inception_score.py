"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) ‖ p(y))), over 10 splits.

The score is a pure function of class probabilities p(y|x) [N, classes] (or logits). Splits are
consecutive blocks of N // splits samples (the remainder is dropped, as in the original
script); within a split p(y) is the mean of its rows; the result is the mean and the standard
deviation (ddof = 0) of the per-split scores. 0·log 0 counts as 0.

Logits of the FID network (`LOGITS`): the original Inception Score script computes its 1008-way
softmax from pool3 features times the graph's `softmax/logits` weight matrix, without the bias;
pytorch-fid's weight file carries that layer as `fc.weight` [1008, 2048] (and `fc.bias`). The
network gives these logits with its pool3 features in one pass
(`gancmp.metrics.features.FeatureExtractor.features_and_logits`, weights converted with the
classifier, format version 2) — the trial evaluator's way; from stored pool3 features,
`logits_from_pool3` applies the layer read by `fc_from_pth` (`gancmp is`):

    w, _ = fc_from_pth("pt_inception-2015-12-05-6726825d.pth")
    mean, std = inception_score_from_logits(logits_from_pool3(features, w))

(the network computes in float32, this in float64: the scores agree to about 1e-6).
compare_gan v1's evaluator took one split of all its samples (TF-GAN's `classifier_score`,
`classifier_metrics_impl.py` L351–391) on TF-GAN's Inception graph: a trial's evaluation does
the same (`gancmp.metrics.evaluators.IS_SPLITS` = 1, recorded). The default of 10 splits here,
and of `gancmp is`, is the original script's, so those scores compare with the literature; a
10-split mean is lower than one split of the same samples.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

LOGITS = "pool3 · fc.weightᵀ, no bias (the original script's)"  # recorded with every IS


class InceptionScore(NamedTuple):
    """Mean and standard deviation (ddof = 0) of the per-split scores."""

    mean: float
    std: float


def inception_score(probs: np.ndarray, num_splits: int = 10) -> InceptionScore:
    """Inception Score of class probabilities [N, classes] (rows summing to 1)."""
    p = np.asarray(probs, np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be [N, classes], got shape {p.shape}")
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probs must be non-negative with rows summing to 1 (pass logits to "
                         "inception_score_from_logits)")
    if num_splits < 1 or len(p) < num_splits:
        raise ValueError(f"num_splits must be between 1 and N={len(p)}, got {num_splits}")
    size = len(p) // num_splits
    scores = []
    for k in range(num_splits):
        part = p[k * size:(k + 1) * size]
        py = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(py)), 0.0)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return InceptionScore(float(np.mean(scores)), float(np.std(scores)))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits [N, classes], in float64."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def inception_score_from_logits(logits: np.ndarray, num_splits: int = 10) -> InceptionScore:
    """Inception Score of logits [N, classes]."""
    return inception_score(softmax(logits), num_splits)


def logits_from_pool3(features: np.ndarray, fc_weight: np.ndarray,
                      fc_bias: np.ndarray | None = None) -> np.ndarray:
    """features [N, 2048] @ fc_weight.T [2048, classes] (+ fc_bias) → logits [N, classes].
    Leave `fc_bias` None to match the original Inception Score script."""
    logits = np.asarray(features, np.float64) @ np.asarray(fc_weight, np.float64).T
    if fc_bias is not None:
        logits = logits + np.asarray(fc_bias, np.float64)
    return logits


def fc_from_pth(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(`fc.weight` [1008, 2048], `fc.bias` [1008]) from pytorch-fid's weight file, read with
    the project's restricted (no-code) `.pth` reader."""
    from gancmp.metrics.pth import load_pth

    state = load_pth(path)
    if "fc.weight" not in state:
        raise ValueError(f"{path} has no 'fc.weight' (is it pytorch-fid's FID Inception .pth?)")
    return state["fc.weight"], state["fc.bias"]
