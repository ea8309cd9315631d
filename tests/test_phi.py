"""phi-functions: stable numeric evaluation against mpmath at 50 digits, symbolic forms."""
import math

import mpmath
import numpy as np
import pytest
import sympy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from samplerlab.theory.phi_functions import (PHI_MODULE, Phi, expand_phi, phi, phi_mpmath,
                                            phi_sym)

KS = range(0, 8)


def _ref(k, zs):
    return np.array([float(phi_mpmath(k, mpmath.mpf(float(z)), dps=50)) for z in zs])


def _grid():
    mags = np.logspace(-12, math.log10(60.0), 400)
    return np.concatenate([mags, -mags])


@pytest.mark.parametrize("k", KS)
def test_float64_relative_error_against_mpmath(k):
    zs = _grid()
    rel = np.abs(phi(k, zs) - _ref(k, zs)) / np.abs(_ref(k, zs))
    assert rel.max() <= 1e-14, (k, rel.max(), zs[np.argmax(rel)])


@settings(max_examples=200, deadline=None)
@given(k=st.integers(0, 6),
       logmag=st.floats(-12.0, math.log10(60.0)),
       sign=st.sampled_from([-1.0, 1.0]))
def test_hypothesis_scalar_against_mpmath(k, logmag, sign):
    z = sign * 10.0 ** logmag
    ref = float(phi_mpmath(k, z))
    assert abs(phi(k, z) - ref) <= 1e-14 * abs(ref)


def test_reference_itself_matches_explicit_series_at_higher_precision():
    # independent check of phi_mpmath: the defining series summed at 120 digits
    with mpmath.workdps(120):
        for k in (0, 1, 3, 6):
            for z in ("-60", "-3.5", "-1e-9", "0.25", "40"):
                zz = mpmath.mpf(z)
                s = mpmath.nsum(lambda j: zz ** j / mpmath.factorial(j + k), [0, mpmath.inf])
                assert abs(phi_mpmath(k, zz, dps=50) - s) <= mpmath.mpf(10) ** -45 * abs(s)


@pytest.mark.parametrize("c", [0.0, 1 / 3, 0.5, 2 / 3, 1.0])
def test_stage_nodes_phi_of_minus_c_h(c):
    hs = np.logspace(-4, math.log10(50.0), 200)
    for k in range(0, 5):
        got = phi(k, -c * hs)
        ref = np.array([float(phi_mpmath(k, -mpmath.mpf(c) * mpmath.mpf(h))) for h in hs])
        np.testing.assert_allclose(got, ref, rtol=1e-14, atol=0)


def test_value_at_zero_and_known_closed_forms():
    for k in range(8):
        assert phi(k, 0.0) == pytest.approx(1 / math.factorial(k), rel=1e-16)
    h = 0.7
    assert phi(1, -h) == pytest.approx((1 - math.exp(-h)) / h, rel=1e-15)
    assert phi(2, -h) == pytest.approx((h - 1 + math.exp(-h)) / h ** 2, rel=1e-14)
    assert phi(3, -h) == pytest.approx((h * h / 2 - h + 1 - math.exp(-h)) / h ** 3, rel=1e-13)


def test_recurrence_holds_numerically():
    z = np.linspace(-30, 30, 121)
    z = z[z != 0]
    for k in range(0, 6):
        # the identity's own cancellation scale: |z phi_{k+1}| + 1/k!
        scale = np.abs(z * phi(k + 1, z)) + 1 / math.factorial(k)
        lhs = z * phi(k + 1, z) + 1 / math.factorial(k)
        assert np.all(np.abs(lhs - phi(k, z)) <= 4e-16 * 4 * scale)


def test_types_preserved():
    assert isinstance(phi(2, -0.5), float)
    assert isinstance(phi(2, 1), float)
    a = phi(2, np.array([[-1.0, 2.0]]))
    assert isinstance(a, np.ndarray) and a.shape == (1, 2) and a.dtype == np.float64
    assert isinstance(phi(1, np.float64(-2.0)), np.floating)


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-14), (torch.float32, 2e-6)])
def test_torch_paths(dtype, rtol):
    zs = _grid()[::7]
    t = torch.tensor(zs, dtype=dtype)
    for k in range(0, 7):
        out = phi(k, t)
        assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.device == t.device
        assert out.shape == t.shape
        ref = _ref(k, t.double().numpy())
        rel = np.abs(out.double().numpy() - ref) / np.abs(ref)
        assert rel.max() <= rtol, (k, rel.max())


def test_torch_half_dtype_roundtrip():
    t = torch.tensor([-2.0, 0.5], dtype=torch.bfloat16)
    assert phi(2, t).dtype == torch.bfloat16


def test_bad_input():
    with pytest.raises(ValueError, match="k"):
        phi(-1, 0.3)
    with pytest.raises(TypeError, match="k"):
        phi(1.5, 0.3)
    with pytest.raises(ValueError, match="z must be finite"):
        phi(1, float("nan"))
    with pytest.raises(ValueError, match="z must be finite"):
        phi(1, np.array([0.0, np.inf]))
    with pytest.raises(ValueError, match="z must be finite"):
        phi(1, torch.tensor([float("nan")]))
    with pytest.raises(TypeError, match="z"):
        phi(1, torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="z"):
        phi(1, "0.5")


def test_symbolic_forms_agree():
    z = sympy.Symbol("z")
    h = sympy.Symbol("h", positive=True)
    for k in range(0, 5):
        assert sympy.simplify(Phi(k, z).rewrite(sympy.exp) - phi_sym(k, z)) == 0
        # recurrence, symbolically
        if k >= 1:
            assert sympy.simplify(phi_sym(k, z) - (phi_sym(k - 1, z) - 1 / sympy.factorial(k - 1)) / z) == 0
        # value at 0 and Taylor series
        assert Phi(k, 0) == sympy.Rational(1, math.factorial(k))
        ser = sympy.series(Phi(k, z), z, 0, 5).removeO()
        expected = sum(z ** j / sympy.factorial(j + k) for j in range(5))
        assert sympy.expand(ser - expected) == 0
        # derivative identity phi_k' = phi_k - k phi_{k+1}
        d = sympy.diff(phi_sym(k, z), z) - (phi_sym(k, z) - k * phi_sym(k + 1, z))
        assert sympy.simplify(d) == 0
    assert str(Phi(2, -h)) == "phi_2(-h)"
    assert sympy.latex(Phi(2, -h)) == r"\varphi_{2}\left(- h\right)"
    assert expand_phi(Phi(1, -h)) == phi_sym(1, -h)


def test_evalf_and_lambdify_use_high_precision_and_stable_numeric():
    val = sympy.N(Phi(3, sympy.Rational(-7, 2)), 40)
    with mpmath.workdps(60):
        ref = phi_mpmath(3, mpmath.mpf(-7) / 2, dps=60)
        assert abs(mpmath.mpf(str(val)) - ref) < mpmath.mpf(10) ** -38
    h = sympy.Symbol("h", positive=True)
    f = sympy.lambdify(h, Phi(2, -h), [PHI_MODULE, "numpy"])
    hs = np.array([1e-10, 1e-3, 1.0, 30.0])
    np.testing.assert_allclose(f(hs), _ref(2, -hs), rtol=1e-14)
    with pytest.raises(ValueError):
        Phi(-1, h)


@pytest.mark.parametrize("backend", ["numpy", "torch64", "torch32"])
def test_large_inputs_use_the_constant_memory_path_with_the_same_accuracy(backend):
    # above VECTOR_SERIES_MAX_ELEMENTS the series are summed by Horner's rule instead of
    # cumulative products: same accuracy bound against mpmath, on every element
    from samplerlab.theory.phi_functions import VECTOR_SERIES_MAX_ELEMENTS
    zs = _grid()
    limit = max(VECTOR_SERIES_MAX_ELEMENTS.values())
    assert zs.size <= limit   # the grid alone takes the cumulative-product path in torch
    reps = limit // zs.size + 1
    big = np.tile(zs, reps)
    assert big.size > limit
    rtol = 2e-6 if backend == "torch32" else 1e-14
    for k in (1, 2, 4, 7):
        ref = np.tile(_ref(k, zs), reps)
        if backend == "numpy":
            got = phi(k, big)
        else:
            dtype = torch.float64 if backend == "torch64" else torch.float32
            t = torch.tensor(big, dtype=dtype)
            got = phi(k, t).double().numpy()
            ref = np.tile(_ref(k, t[:zs.size].double().numpy()), reps)
        rel = np.abs(got - ref) / np.abs(ref)
        assert rel.max() <= rtol, (backend, k, rel.max())
        if backend == "numpy":   # and it agrees with the small-input path element by element
            small = np.concatenate([phi(k, chunk) for chunk in np.array_split(big, 4 * reps)])
            np.testing.assert_allclose(got, small, rtol=4e-16 * 8, atol=0)


def test_cached_series_rows_survive_inference_mode():
    # a row first built under torch.inference_mode() must not poison later autograd use
    from samplerlab.theory import phi_functions
    phi_functions._torch_row.cache_clear()
    with torch.inference_mode():
        phi(2, -torch.linspace(0.1, 3.0, 5, dtype=torch.float64))
    z = (-torch.linspace(0.1, 3.0, 5, dtype=torch.float64)).requires_grad_()
    phi(2, z).sum().backward()
    # d/dz phi_2 = phi_2 - 2 phi_3 (the derivative rule of Phi)
    expected = phi(2, z.detach()) - 2 * phi(3, z.detach())
    torch.testing.assert_close(z.grad, expected, rtol=1e-13, atol=0)
