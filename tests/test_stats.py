"""The statistics of the analyses (sardfq.analysis.stats): Spearman's rho with its bootstrap interval
and exact or sampled permutation p-value, and for paired differences a bootstrap interval of their
mean and a sign-flip p-value."""
import numpy as np
import pytest

from sardfq.analysis.stats import (bootstrap_ci, bootstrap_mean_ci, permutation_p_value, sign_flip_p_value,
                                   smallest_p_value, spearman)


def test_spearman_and_its_bootstrap_interval():
    x = np.arange(10.0)
    assert spearman(x, x ** 3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert np.isnan(spearman(x, np.ones(10)))
    low, high = bootstrap_ci(x, x + np.random.default_rng(0).normal(0, 3, 10), n_boot=500)
    assert -1.0 <= low < high <= 1.0


def test_permutation_p_values_exact_and_sampled():
    assert permutation_p_value([1, 2, 3, 4, 5], [10, 20, 30, 40, 50]) == pytest.approx(smallest_p_value(5))
    assert permutation_p_value([1, 2, 3], [5, 5, 5]) == 1.0  # a constant side: no correlation
    order = list(range(10))
    sampled = permutation_p_value(order, order, draws=20000, seed=0)  # 10! orderings: sampled
    assert sampled < 0.001 and permutation_p_value(order, order[::-1], draws=20000, seed=0) < 0.001
    shuffled = [3, 7, 1, 9, 0, 5, 2, 8, 6, 4]
    assert permutation_p_value(order, shuffled, draws=20000, seed=0) > 0.05


def test_sign_flip_p_value_is_exact_for_few_differences_and_sampled_beyond():
    assert sign_flip_p_value([1.0, 2.0, 3.0, 4.0]) == pytest.approx(2 / 16)  # all one way: 2 of 16 patterns
    assert sign_flip_p_value([0.0, 0.0, 0.0]) == 1.0
    assert sign_flip_p_value([1.0, -1.0, 1.0, -1.0]) == 1.0
    many = sign_flip_p_value(np.ones(20), draws=5000, seed=1)  # 2^20 patterns: sampled
    assert 0 < many < 0.01
    assert sign_flip_p_value(np.ones(20), draws=5000, seed=1) == many  # seeded


def test_bootstrap_mean_ci_holds_the_mean_and_collapses_on_a_constant():
    values = np.random.default_rng(0).normal(3.0, 1.0, 40)
    low, high = bootstrap_mean_ci(values, n_boot=500)
    assert low < values.mean() < high and high - low < 1.5
    assert bootstrap_mean_ci([2.0] * 5) == (2.0, 2.0)
