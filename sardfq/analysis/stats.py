"""Statistics shared by the analyses: Spearman's rho, its bootstrap interval and its exact
permutation p-value; for paired differences, a bootstrap interval of their mean and a sign-flip
p-value."""
from __future__ import annotations

import itertools
import math

import numpy as np


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, ties sharing their mean rank (1-based)."""
    below = (x[..., :, None] > x[..., None, :]).sum(-1)
    ties = (x[..., :, None] == x[..., None, :]).sum(-1)
    return below + (ties + 1) / 2


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _pearson_rows(ranks(x), ranks(y))


def spearman(x, y) -> float:
    """Spearman rank correlation (ties get their mean rank); NaN when either side is constant."""
    return float(_spearman_rows(np.asarray(x, float), np.asarray(y, float)))


def bootstrap_ci(x, y, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the Spearman correlation, resampling (x, y) pairs (resamples in
    which either side is constant have no correlation and are left out)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    index = np.random.default_rng(seed).integers(0, len(x), (n_boot, len(x)))
    draws = _spearman_rows(x[index], y[index])
    draws = draws[~np.isnan(draws)]
    if len(draws) == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    return float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))


EXACT_UP_TO = 8  # pairs; beyond, n! orderings are too many and a seeded Monte Carlo sample is used


def permutation_p_value(x, y, *, draws: int = 200_000, seed: int = 0) -> float:
    """The two-sided permutation p-value of Spearman's rho between `x` and `y`: the share of
    orderings of `y` whose |rho| is at least the observed one (a constant side counts as rho 0).
    Exact (all n! orderings) up to `EXACT_UP_TO` pairs, where it cannot go below 2 / n!; beyond,
    estimated from `draws` random orderings (seeded), counting the observed one."""
    rx, ry = ranks(np.asarray(x, float)), ranks(np.asarray(y, float))
    n = len(rx)
    if n <= EXACT_UP_TO:
        orders = np.array(list(itertools.permutations(range(n))))
    else:
        rng = np.random.default_rng(seed)
        orders = np.argsort(rng.random((draws, n)), axis=1)
    observed = abs(np.nan_to_num(_pearson_rows(rx[None], ry[None])[0]))
    null = np.abs(np.nan_to_num(_pearson_rows(rx[None], ry[orders])))
    hits = np.sum(null >= observed - 1e-12)
    return float(hits / len(orders)) if n <= EXACT_UP_TO else float((hits + 1) / (len(orders) + 1))


EXACT_FLIPS_UP_TO = 16  # differences; beyond, 2^n sign patterns are too many: a seeded sample


def sign_flip_p_value(differences, *, draws: int = 200_000, seed: int = 0) -> float:
    """Two-sided p-value of the mean of paired `differences` against zero: the share of the 2^n
    ways of flipping their signs whose |mean| is at least the observed one. Exact up to
    `EXACT_FLIPS_UP_TO` differences (so never below 2 / 2^n); beyond, estimated from `draws` random
    sign patterns (seeded), counting the observed one. All zero: 1."""
    d = np.asarray(differences, float)
    n = len(d)
    if n == 0:
        return float("nan")
    if n <= EXACT_FLIPS_UP_TO:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
    else:
        signs = np.where(np.random.default_rng(seed).random((draws, n)) < 0.5, -1, 1)
    observed = abs(d.mean())
    hits = np.sum(np.abs((signs * d).mean(1)) >= observed - 1e-12)
    return float(hits / len(signs)) if n <= EXACT_FLIPS_UP_TO else float((hits + 1) / (len(signs) + 1))


def bootstrap_mean_ci(values, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` (resampled with replacement)."""
    v = np.asarray(values, float)
    if len(v) == 0:
        return float("nan"), float("nan")
    means = v[np.random.default_rng(seed).integers(0, len(v), (n_boot, len(v)))].mean(1)
    tail = 100 * (1 - level) / 2
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a - a.mean(-1, keepdims=True), b - b.mean(-1, keepdims=True)
    denom = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(-1) / denom, np.nan)


def smallest_p_value(n: int) -> float:
    """The smallest exact two-sided p-value for n pairs (an exact order or its reverse)."""
    return 2 / math.factorial(n) if n > 1 else 1.0
