"""The phi-functions of exponential integrators: symbolic, numerically stable, and high precision.

Definition (standard; Hochbruck & Ostermann, Acta Numerica 19 (2010), eq. (2.10))::

    phi_0(z) = e^z,    phi_{k+1}(z) = (phi_k(z) - 1/k!) / z,    phi_k(0) = 1/k!
    phi_k(z) = sum_{j>=0} z^j / (j+k)!  =  1F1(1; k+1; z) / k!
    phi_k(z) = 1/(k-1)! int_0^1 e^{(1-s) z} s^(k-1) ds                      (k >= 1)

**Sign convention (used everywhere in samplerlab).** Integrators run in ``lambda = -log sigma``
(VE noise level sigma), where the PF-ODE is ``dx/dlambda = D(x, e^-lambda) - x`` with linear part
``L = -1``.  A step of length ``h = log(sigma_n / sigma_{n+1}) > 0`` therefore uses the
phi-functions at the **negative** argument ``Z = h L = -h``::

    int_0^h e^{-(h - tau)} tau^(k-1)/(k-1)! dtau = h^k phi_k(-h),

and a stage at node ``c_i`` uses ``phi_k(-c_i h)``.  See DESIGN.md ("Variables and sign
conventions") and the RES notes (shared/papers/notes-accelerated-samplers-and-res.md §2.2).

Numerical evaluation (:func:`phi`) -- no cancellation anywhere, for float64 the relative error is
a few ulp over ``|z| <= 60`` and ``k <= 6`` (tests/test_phi.py measures it against
:func:`phi_mpmath` at 50 digits):

* ``k = 0``: ``exp(z)``.
* ``|z| <= T_k = max(8, 2k)``:

  - ``z >= 0``: the Taylor series ``(1/k!) (1 + z/(k+1) (1 + z/(k+2) (1 + ...)))`` -- all terms
    positive;
  - ``z < 0``: the equivalent series ``phi_k(z) = e^z/(k-1)! sum_j (-z)^j / (j! (j+k))`` (expand
    ``e^{-s z}`` in the integral form), again all terms positive.

* ``|z| > T_k``: ``phi_1 = expm1(z)/z`` and the forward recurrence.  For ``|z| > 2k`` each step
  of the recurrence damps (``z < 0``: by about ``j/|z| <= 1/2``) or preserves (``z > 0``) the
  relative error, so it is stable there.

The symbolic side has two forms: :func:`phi_sym` the explicit expression in ``exp``, and the sympy
function :class:`Phi` ``Phi(k, z)`` that stays unevaluated (so tableau entries read as
``phi_k(-c h)``), differentiates (``phi_k' = phi_k - k phi_{k+1}``), expands in series at 0,
evaluates with ``evalf`` at any precision and rewrites to :func:`phi_sym` via
``expr.rewrite(sympy.exp)`` or :func:`expand_phi`.
"""
from __future__ import annotations

import functools
import math
import numbers

import mpmath
import numpy as np
import sympy
import torch

__all__ = ["phi", "phi_sym", "phi_mpmath", "Phi", "expand_phi", "PHI_MODULE"]


# ----------------------------------------------------------------------------------------------
# numeric
# ----------------------------------------------------------------------------------------------

def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be a non-negative integer, got {type(k).__name__}")
    if k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k}")
    return int(k)


def _series_threshold(k: int) -> float:
    return float(max(8, 2 * k))


@functools.lru_cache(maxsize=None)
def _n_terms(k: int, t: float, tol: float = 1e-18) -> int:
    """Number of series terms so that the truncated tail is below ``tol`` relative, for |z| <= t."""
    # both series have term ratios <= t/(j+1); the tail after n terms is <= t^n/n! * e^t-ish
    # relative to a sum >= its first term; stop when t^n / n! < tol * e^-t.
    n, term = 0, 1.0
    bound = tol * math.exp(-t)
    while term >= bound or n < 4:
        n += 1
        term *= t / n
    return n + 2


@functools.lru_cache(maxsize=None)
def _series_tables(k: int, n: int):
    """Constant rows of the two series (j = 1..n):

    * ``pos_ratio[j-1] = 1/(k+j)``: term ratios of ``k! phi_k(z) = sum_j prod_{i<=j} z/(k+i)``;
    * ``neg_ratio[j-1] = 1/j`` and ``neg_weight[j-1] = 1/(j+k)``: the terms ``x^j/j!`` of
      ``(k-1)! e^{-z} phi_k(z) = sum_j x^j / (j! (j+k))``, ``x = -z``.

    Returned as tuples of Python floats (immutable, so the cache cannot be altered).
    """
    j = np.arange(1, n + 1, dtype=np.float64)
    return tuple(tuple((1.0 / v).tolist()) for v in (k + j, j, j + k))


class _NumpyOps:
    kind = "numpy"
    where = staticmethod(np.where)
    exp = staticmethod(np.exp)
    expm1 = staticmethod(np.expm1)
    abs = staticmethod(np.abs)
    log = staticmethod(np.log)

    @staticmethod
    def log_max(z):
        return math.log(np.finfo(z.dtype).max)

    @staticmethod
    def any(mask):
        return bool(np.any(mask))

    @staticmethod
    def full_like(z, v):
        return np.full_like(z, v)

    @staticmethod
    def row(values, like):
        return np.asarray(values, dtype=np.float64)

    @staticmethod
    def cumprod(a):
        return np.cumprod(a, axis=-1)


class _TorchOps:
    kind = "torch"
    where = staticmethod(torch.where)
    exp = staticmethod(torch.exp)
    expm1 = staticmethod(torch.expm1)
    abs = staticmethod(torch.abs)
    log = staticmethod(torch.log)

    @staticmethod
    def log_max(z):
        return math.log(torch.finfo(z.dtype).max)

    @staticmethod
    def any(mask):
        return bool(mask.any())

    @staticmethod
    def full_like(z, v):
        return torch.full_like(z, v)

    @staticmethod
    def row(values, like):
        return _torch_row(values, like.dtype, like.device)

    @staticmethod
    def cumprod(a):
        return torch.cumprod(a, dim=-1)


@functools.lru_cache(maxsize=256)
def _torch_row(values, dtype, device):
    """A series table as a tensor, built once per (table, dtype, device); never written to.
    Built outside inference mode, so a row first made under ``torch.inference_mode()`` can still
    be saved for backward later (AMED trains through these functions)."""
    with torch.inference_mode(False):
        return torch.tensor(values, dtype=dtype, device=device)


#: Per backend: inputs with more elements than this use Horner's rule (constant extra memory);
#: smaller ones the cumulative products of :func:`_series_sum` (a few large array operations:
#: faster where the per-operation cost dominates, but ``[N, terms]`` temporaries). Crossovers
#: measured on a 2-core CPU: numpy ~700 elements, torch ~3000.
VECTOR_SERIES_MAX_ELEMENTS = {"numpy": 512, "torch": 2048}


def _series_sum(ops, z, ratio, weight=None):
    """``sum_{j=1..n} w_j prod_{i<=j} (z ratio_i)`` elementwise (``w_j = 1`` when ``weight`` is
    None); every term is >= 0 where it is used (``z >= 0``), so neither form cancels.

    Small inputs: the terms as cumulative products over a trailing axis, then one sum. Large
    inputs: Horner's rule ``z r_1 (w_1 + z r_2 (w_2 + ... + z r_n w_n))``.
    """
    size = z.numel() if isinstance(z, torch.Tensor) else z.size
    if size <= VECTOR_SERIES_MAX_ELEMENTS[ops.kind]:
        terms = ops.cumprod(z[..., None] * ops.row(ratio, z))
        if weight is not None:
            terms = terms * ops.row(weight, z)
        return terms.sum(-1)  # the same call for numpy arrays and tensors
    w = weight if weight is not None else (1.0,) * len(ratio)
    acc = ops.full_like(z, w[-1])
    for j in range(len(ratio) - 2, -1, -1):
        acc = w[j] + (z * ratio[j + 1]) * acc
    return (z * ratio[0]) * acc


def _phi_array(k: int, z, ops):
    """phi_k(z) elementwise for a float numpy array or torch tensor ``z`` (same dtype/device).

    The two series are summed by :func:`_series_sum`: for small inputs as cumulative products of
    their term ratios (a handful of array operations, whatever the number of terms), for large
    ones by Horner's rule (no ``[N, terms]`` temporaries).
    """
    if k == 0:
        return ops.exp(z)
    t = _series_threshold(k)
    small = ops.abs(z) <= t
    zero = ops.full_like(z, 0.0)
    # --- series branch (|z| <= T_k); evaluated on a clamped copy so no branch sees bad values
    zs = ops.where(small, z, zero)
    pos_ratio, neg_ratio, neg_weight = _series_tables(k, _n_terms(k, t))
    pos = zs >= 0
    zp = ops.where(pos, zs, zero)
    series_pos = (1.0 + _series_sum(ops, zp, pos_ratio)) * (1.0 / math.factorial(k))
    xn = ops.where(pos, zero, -zs)
    series_neg = ops.exp(-xn) * ((1.0 / k + _series_sum(ops, xn, neg_ratio, neg_weight))
                                 * (1.0 / math.factorial(k - 1)))
    series = ops.where(pos, series_pos, series_neg)
    # --- recurrence branch (|z| > T_k)
    zr = ops.where(small, ops.full_like(z, 2.0 * t), z)
    val = ops.expm1(zr) / zr
    for j in range(1, k):
        val = (val - 1.0 / math.factorial(j)) / zr
    # --- large positive z, where e^z overflows the dtype but phi_k(z) = e^z / z^k (1 - c) may
    # not: c = e^-z sum_{j<k} z^j / j! (a Poisson(z) tail, < 1e-15 there for k <= 20), each
    # term formed in logs; the result overflows only where the true value does
    lim = ops.log_max(z) - 1.0
    big = z > lim
    if ops.any(big):
        zb = ops.where(big, z, ops.full_like(z, lim))
        logz = ops.log(zb)
        corr = ops.full_like(z, 0.0)
        for j in range(k):
            corr = corr + ops.exp(j * logz - math.lgamma(j + 1) - zb)
        val = ops.where(big, ops.exp(zb - k * logz) * (1.0 - corr), val)
    return ops.where(small, series, val)


def phi(k: int, z):
    """Numerically stable ``phi_k(z)`` (see the module docstring for the definition and method).

    Parameters
    ----------
    k : non-negative int.
    z : Python real number, numpy array / numpy scalar, or torch tensor (floating point).

    Returns
    -------
    The same kind of object as ``z``: a Python float for a Python number, a float64 numpy array
    (or numpy float64 scalar) for numpy input, and for a tensor a tensor of the same shape,
    dtype and device (float16/bfloat16 are computed in float32 and cast back).

    In samplerlab's integrators the argument is ``-h`` or ``-c_i h`` with ``h > 0`` (module
    docstring).  ``z`` must be finite; the result is finite wherever ``phi_k(z)`` is
    representable in the dtype (``e^z / z^k`` in logs where ``e^z`` alone would overflow: e.g.
    ``phi_3(100)`` in float32, ``phi_20(800)`` in float64) and ``inf`` only beyond.
    """
    k = _check_k(k)
    if isinstance(z, torch.Tensor):
        if not z.is_floating_point():
            raise TypeError(f"z must be a floating-point tensor, got dtype {z.dtype}")
        if not torch.isfinite(z).all():
            raise ValueError("z must be finite (no NaN or inf)")
        if z.dtype in (torch.float16, torch.bfloat16):
            return _phi_array(k, z.to(torch.float32), _TorchOps).to(z.dtype)
        return _phi_array(k, z, _TorchOps)
    if isinstance(z, bool):
        raise TypeError("z must be a real number, numpy array or torch tensor, got bool")
    if isinstance(z, numbers.Real) and not isinstance(z, np.generic):
        zf = float(z)
        if not math.isfinite(zf):
            raise ValueError(f"z must be finite, got {z!r}")
        with np.errstate(over="ignore"):
            return float(_phi_array(k, np.asarray([zf]), _NumpyOps)[0])
    if isinstance(z, (np.ndarray, np.generic, list, tuple)):
        arr = np.asarray(z)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"z must hold real numbers, got numpy dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise ValueError("z must be finite (no NaN or inf)")
        with np.errstate(over="ignore"):
            out = _phi_array(k, np.atleast_1d(arr), _NumpyOps).reshape(arr.shape)
        return out[()] if out.ndim == 0 else out
    raise TypeError(f"z must be a real number, numpy array or torch tensor, got {type(z).__name__}")


# ----------------------------------------------------------------------------------------------
# high precision reference
# ----------------------------------------------------------------------------------------------

def phi_mpmath(k: int, z, dps: int = 50):
    """``phi_k(z)`` as an ``mpmath.mpf`` correct to about ``dps`` digits.

    Uses ``phi_k(z) = 1F1(1; k+1; z) / k!``; mpmath's ``hyp1f1`` raises its internal precision to
    absorb cancellation, so the result is accurate for either sign of ``z``.
    """
    k = _check_k(k)
    with mpmath.workdps(dps):
        zz = mpmath.mpf(z) if not isinstance(z, mpmath.mpf) else z
        val = mpmath.hyp1f1(1, k + 1, zz) / mpmath.factorial(k)
        return +val


# ----------------------------------------------------------------------------------------------
# symbolic
# ----------------------------------------------------------------------------------------------

def phi_sym(k: int, z):
    """Explicit sympy expression ``(e^z - sum_{j<k} z^j/j!) / z^k`` (removable singularity at 0)."""
    k = _check_k(k)
    z = sympy.sympify(z)
    return (sympy.exp(z) - sum(z ** j / sympy.factorial(j) for j in range(k))) / z ** k


class Phi(sympy.Function):
    """Unevaluated sympy function ``Phi(k, z) = phi_k(z)`` (prints as ``phi_k(z)``).

    Evaluates automatically only at ``z = 0`` (to ``1/k!``) and for ``k = 0`` (to ``exp(z)``).
    ``expr.rewrite(sympy.exp)`` or :func:`expand_phi` turn it into :func:`phi_sym`; ``evalf``
    uses :func:`phi_mpmath`; :data:`PHI_MODULE` maps it onto the stable numeric :func:`phi` for
    ``sympy.lambdify``.
    """

    nargs = 2

    @classmethod
    def eval(cls, k, z):
        if k.is_Integer:
            if k < 0:
                raise ValueError(f"Phi: k must be a non-negative integer, got {k}")
            if k == 0:
                return sympy.exp(z)
            if z.is_zero:
                return sympy.Rational(1, sympy.factorial(k))
        elif k.is_number:
            raise ValueError(f"Phi: k must be a non-negative integer, got {k}")
        return None

    def fdiff(self, argindex=2):
        if argindex != 2:
            raise sympy.ArgumentIndexError(self, argindex)
        k, z = self.args
        # phi_k' = phi_k - k phi_{k+1}
        return Phi(k, z) - k * Phi(k + 1, z)

    def _eval_rewrite_as_exp(self, k, z, **kwargs):
        if k.is_Integer:
            return phi_sym(int(k), z)
        return None

    def _eval_evalf(self, prec):
        k, z = self.args
        if not k.is_Integer:
            return None
        zv = z.evalf(prec)
        if not zv.is_Number:
            return None
        dps = mpmath.libmp.prec_to_dps(prec) + 10
        val = phi_mpmath(int(k), zv._to_mpmath(prec + 40), dps)
        return sympy.Float(val, dps).evalf(prec)

    def _sympystr(self, printer):
        k, z = self.args
        return f"phi_{printer._print(k)}({printer._print(z)})"

    def _latex(self, printer, exp=None):
        k, z = self.args
        base = rf"\varphi_{{{printer._print(k)}}}\left({printer._print(z)}\right)"
        return base if exp is None else rf"{base}^{{{exp}}}"

    def _pretty(self, printer):
        k, z = self.args
        return printer._print_Function(sympy.Function(f"phi_{k}")(z))


def expand_phi(expr):
    """Replace every ``Phi(k, z)`` in ``expr`` by its explicit form :func:`phi_sym`."""
    return sympy.sympify(expr).replace(
        lambda e: isinstance(e, Phi) and e.args[0].is_Integer,
        lambda e: phi_sym(int(e.args[0]), e.args[1]))


def _phi_for_lambdify(k, z):
    return phi(int(k), z)


#: ``modules`` entry for ``sympy.lambdify``: ``lambdify(args, expr, [PHI_MODULE, "numpy"])``.
PHI_MODULE = {"Phi": _phi_for_lambdify}
