"""Tests of the empirical-order estimator (experiments/order.py) on synthetic error sequences."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from samplerlab.experiments.order import (OrderEstimate, OrderEstimationError, estimate_order,
                                          fit_power_law)

N = 2.0 ** np.arange(1, 17)  # 2 .. 65536


def synthetic(p, rng, *, noise=0.02, floor=1e-13, n0=16.0, n=N):
    """``3 n^-p (1 + noise)`` for n >= n0, a pre-asymptotic bump below n0 (error *growing* with n
    up to n0, as for a method that is unstable at few steps) and an additive round-off floor
    ``floor * |xi|``."""
    clean = np.where(n >= n0, 3.0 * n ** (-p), 3.0 * n0 ** (-p) * (n / n0))
    return clean * (1 + noise * rng.standard_normal(n.size)) + floor * np.abs(
        rng.standard_normal(n.size))


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_recovers_known_slope_with_bump_and_floor(p):
    e = synthetic(p, np.random.default_rng(1234 + p))
    est = estimate_order(N, e, floor=1e-13)
    assert abs(est.order - p) < 0.03, str(est)
    # (whether this one seed's interval covers p is a 95 % event: coverage is tested below)
    # the bump (n < 16) is never fitted; the floor-dominated points are labelled as such
    assert not est.mask[N < 16].any()
    assert all(lab == "pre-asymptotic" for lab in np.array(est.labels)[N < 16])
    assert not est.mask[e <= 100 * 1e-13].any()
    assert est.num_used >= 5
    assert np.all(np.diff(est.n_used) > 0)
    assert est.ci_low < est.order < est.ci_high


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_interval_coverage_over_seeds(p):
    """The 95 % interval must cover the truth in about 95 % of seeds (measured 92-95 % over 300
    seeds); 100 seeds at >= 88 % is 3 binomial standard deviations below 95 %."""
    hits = 0
    for seed in range(100):
        est = estimate_order(N, synthetic(p, np.random.default_rng(seed)), floor=1e-13)
        assert abs(est.order - p) < 0.05, (seed, str(est))
        hits += est.contains(p)
    assert hits >= 88, hits


@pytest.mark.parametrize("p", [1, 2, 4])
def test_flat_floor_detected_without_floor_argument(p):
    rng = np.random.default_rng(7)
    e = np.maximum(2.0 * N ** (-p) * (1 + 0.01 * rng.standard_normal(N.size)),
                   1e-12 * (1 + 0.01 * rng.standard_normal(N.size)))
    est = estimate_order(N, e)
    assert abs(est.order - p) < 0.03, str(est)
    on_plateau = 2.0 * N ** (-p) < 0.5e-12
    assert not est.mask[on_plateau].any()
    assert all(lab in ("floor", "near-floor") for lab in np.array(est.labels)[on_plateau])


def test_rising_round_off_tail_is_floor():
    n = np.array([4, 8, 16, 32, 64, 128, 256, 512.0])
    e = 5.0 * n ** -4.0
    e[-2:] = [4e-8, 9e-8]  # rising again after the minimum (round-off accumulation)
    est = estimate_order(n, e)
    assert est.labels[-2:] == ("floor", "floor")
    assert est.order == pytest.approx(4.0, abs=1e-9)


def test_exact_power_law_and_str():
    n = np.array([10, 13, 17, 22, 29, 38.0])  # need not double
    e = 0.7 * n ** -2.5
    est = estimate_order(n, e)
    assert est.order == pytest.approx(2.5, abs=1e-10)
    assert est.constant == pytest.approx(0.7, rel=1e-9)
    assert est.predict(50.0) == pytest.approx(0.7 * 50 ** -2.5, rel=1e-9)
    assert est.mask.all() and est.num_used == 6
    assert str(est) == "2.50 [2.50, 2.50] on 6 points"
    assert isinstance(est, OrderEstimate)
    with pytest.raises(Exception):
        est.order = 3.0  # frozen


def test_unsorted_input_mask_in_input_order():
    n = np.array([64, 2, 16, 4, 32, 8, 128.0])
    e = np.where(n >= 8, n ** -2.0, 8.0 ** -2 * n / 8)  # bump below 8
    est = estimate_order(n, e)
    assert est.order == pytest.approx(2.0, abs=1e-10)
    np.testing.assert_array_equal(est.mask, n >= 8)
    np.testing.assert_array_equal(est.n_used, [8, 16, 32, 64, 128])


def test_ols_matches_scipy_linregress():
    rng = np.random.default_rng(3)
    n = np.array([5, 9, 14, 20, 33, 51, 80.0])
    e = 2.0 * n ** -1.7 * np.exp(0.05 * rng.standard_normal(n.size))
    p, se, lo, hi, a = fit_power_law(n, e, confidence=0.9)
    ref = stats.linregress(np.log(n), np.log(e))
    assert p == pytest.approx(-ref.slope, rel=1e-12)
    assert se == pytest.approx(ref.stderr, rel=1e-10)
    assert a == pytest.approx(ref.intercept, rel=1e-12)
    t = stats.t.ppf(0.95, n.size - 2)
    assert (lo, hi) == pytest.approx((p - t * ref.stderr, p + t * ref.stderr), rel=1e-10)


def test_two_points_give_nan_interval():
    est = estimate_order([10, 20], [1e-2, 2.5e-3], min_points=2)
    assert est.order == pytest.approx(2.0, abs=1e-12)
    assert math.isnan(est.ci_low) and math.isnan(est.ci_high) and math.isnan(est.stderr)
    assert not est.contains(2.0)
    assert str(est) == "2.00 [nan, nan] on 2 points"
    with pytest.raises(OrderEstimationError):  # default min_points = 3
        estimate_order([10, 20], [1e-2, 2.5e-3])


@pytest.mark.parametrize("errors, kwargs", [
    ([1e-13 * (1 + 0.01 * k % 3) for k in range(8)], {}),                  # plateau
    ([1e-13, 9e-14, 1.1e-13, 8e-14, 1.2e-13, 7e-14, 1e-13, 9e-14], {"floor": 1e-13}),
    ([0.0] * 6, {}),                                                        # exact zeros
    ([1e-12, 1.0e-12, 0.99e-12, 1.01e-12, 0.98e-12, 0.99e-12], {}),         # flat, slope ~ 0
])
def test_everything_at_floor_raises(errors, kwargs):
    n = 2.0 ** np.arange(2, 2 + len(errors))
    with pytest.raises(OrderEstimationError):
        estimate_order(n, errors, **kwargs)


def test_order_estimation_error_is_value_error():
    assert issubclass(OrderEstimationError, ValueError)


@pytest.mark.parametrize("n, errors, kwargs, match", [
    ([1, 2, 3], [1, 2], {}, "equal lengths"),
    ([1], [1], {}, "at least 2"),
    ([0, 1, 2], [1, 0.5, 0.2], {}, "n must be positive"),
    ([-1, 1, 2], [1, 0.5, 0.2], {}, "n must be positive"),
    ([1, float("nan"), 2], [1, 0.5, 0.2], {}, "n must be finite"),
    ([1, 2, 2], [1, 0.5, 0.2], {}, "distinct"),
    ([1, 2, 3], [1, -0.5, 0.2], {}, "errors must be >= 0"),
    ([1, 2, 3], [1, float("nan"), 0.2], {}, "errors must be finite"),
    ([1, 2, 3], [1, float("inf"), 0.2], {}, "errors must be finite"),
    ([[1, 2], [3, 4]], [[1, 2], [3, 4]], {}, "n must be 1-D"),
    ([1, 2, 3], [1, 0.5, 0.2], {"confidence": 1.0}, "confidence"),
    ([1, 2, 3], [1, 0.5, 0.2], {"floor": -1.0}, "floor"),
    ([1, 2, 3], [1, 0.5, 0.2], {"floor_factor": 0.5}, "floor_factor"),
    ([1, 2, 3], [1, 0.5, 0.2], {"slope_tol": 0.0}, "slope_tol"),
    ([1, 2, 3], [1, 0.5, 0.2], {"min_points": 1}, "min_points"),
    ([1, 2, 3], [1, 0.5, 0.2], {"outlier_alpha": 2.0}, "outlier_alpha"),
])
def test_bad_input(n, errors, kwargs, match):
    with pytest.raises(ValueError, match=match):
        estimate_order(n, errors, **kwargs)


def test_scalar_input_is_type_error():
    with pytest.raises(TypeError, match="n must be"):
        estimate_order(3, [1.0])


def test_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    n = torch.tensor([4.0, 8, 16, 32], dtype=torch.float64)
    est = estimate_order(n, n ** -3)
    assert est.order == pytest.approx(3.0, abs=1e-10)


@settings(max_examples=40, deadline=None)
@given(p=st.floats(0.5, 6.0), log_c=st.floats(-5, 5), start=st.integers(1, 50),
       ratio=st.floats(1.2, 3.0), m=st.integers(3, 10))
def test_exact_power_laws_recovered(p, log_c, start, ratio, m):
    n = start * ratio ** np.arange(m)
    e = math.exp(log_c) * n ** (-p)
    est = estimate_order(n, e)
    assert est.num_used == m
    assert est.order == pytest.approx(p, abs=1e-8)
    assert est.intercept == pytest.approx(log_c, abs=1e-7)
