"""Gaussian mixtures with low-rank-plus-diagonal covariances: exact targets at image dimension.

A component's covariance is ``C_k = U_k U_k^T + diag(a_k)`` with ``U_k`` a ``[d, r]`` factor
(``r <= d``) and ``a_k > 0`` a diagonal. Noising keeps the form: ``V_k = C_k + sigma^2 I =
U_k U_k^T + B_k`` with ``B_k = diag(a_k + sigma^2)``, so everything the samplers and metrics need
is exact in ``O(n K d r)`` operations and ``O(K d r)`` memory, without ever forming a ``d x d``
matrix:

* Woodbury:  ``V_k^{-1} = B_k^{-1} - W_k M_k^{-1} W_k^T`` with ``W_k = B_k^{-1} U_k`` ``[d, r]``
  and the small capacitance matrix ``M_k = I_r + U_k^T B_k^{-1} U_k`` ``[r, r]`` (Cholesky);
* determinant lemma:  ``log det V_k = sum log(a_k + sigma^2) + log det M_k``;
* with ``y_k = x - mu_k``, ``t_k = W_k^T y_k`` and ``w_k = M_k^{-1} t_k``:
  quadratic form ``y^T V^{-1} y = y^T B^{-1} y - t^T w``; ``g_k = V_k^{-1} y_k = B_k^{-1} y_k -
  W_k w_k``; and, since ``U_k^T g_k = w_k``,
  ``C_k V_k^{-1} y_k = rho_k * y_k + sigma^2 W_k w_k`` with ``rho_k = a_k / (a_k + sigma^2)``
  (no cancellation at large sigma, unlike ``y - sigma^2 g``).

Then, with responsibilities ``r_k`` (log-sum-exp over the log-joints),

    score(x) = -sum_k r_k g_k,      D(x, sigma) = sum_k r_k (mu_k + rho_k * y_k + sigma^2 W_k w_k).

Evaluation at one noise level (no ``[n, K, d]`` tensor). Everything x-free is computed once per
``sigma`` and cached: ``b_k = 1/(a_k + sigma^2)``, ``rho_k``, ``Z = [B_k^{-1} (mu_k - c) |
W_k]_k`` stacked as one ``[d, K (1 + r)]`` matrix, and the Gram blocks of ``[mu_k - c | U_k]``
under ``B_k^{-1}`` (``M_k``, ``W_k^T (mu_k - c)``, ``(mu_k - c)^T B_k^{-1} (mu_k - c)``). Here
``c = sum_k w_k mu_k`` is a fixed centre and ``x_c = x - c``, ``mu_k - c`` replace ``x``,
``mu_k`` (``y_k = x_c - (mu_k - c)`` is unchanged). Per batch:

* one GEMM ``x_c @ Z`` gives ``x_c^T B_k^{-1} (mu_k - c)`` and ``W_k^T x_c``, hence
  ``t_k = W_k^T x_c - W_k^T (mu_k - c)``; with ``L_k^{-1}`` (the inverse Cholesky factor of
  ``M_k``, cached) ``q_k = L_k^{-1} t_k``, ``t^T w = |q_k|^2`` and ``w_k = L_k^{-T} q_k`` are two
  batched ``[n, r] x [r, r]`` products (faster than triangular solves on small matrices);
* ``y^T B^{-1} y = x_c^T B_k^{-1} x_c - 2 x_c^T B_k^{-1} (mu_k - c) + (mu_k - c)^T B_k^{-1}
  (mu_k - c)``, the first term one ``[n, d] x [d, K]`` product of ``x_c * x_c`` (a row norm
  times ``b_k`` when ``a_k`` is constant along d);
* since ``1 - rho_k = sigma^2 b_k`` and ``sum_k r_k = 1``, ``D = c + x_c * (r @ rho) + sigma^2
  [r | r w] @ Z^T`` and ``score = [r | r w] @ Z^T - x_c * (r @ b)``: the second GEMM uses the
  same ``Z``, so the two GEMMs carry all ``O(n K d r)`` work and the rest is ``O(n d)`` plus
  ``[n, K] x [K, d]`` products (the bench compares the denoiser's time with two dense products
  of the GEMMs' shapes). For a constant diagonal the ``b_k`` go into the ``[n, K (1 + r)]``
  coefficients and ``Z = [mu - c | U]`` is fixed (no per-level ``[d, K r]`` work).

Accuracy: the expanded quadratic form has absolute round-off ``~ eps |x_c|^2_{B^{-1}}`` instead
of ``~ eps |y_k|^2_{B^{-1}}``, a loss ``|x_c|^2 / |y_k|^2`` (``t_k`` loses only ``|x_c| / |y_k|``).
Centring at ``c`` removes it for means that share a large offset (pixel intensities around 0.5
or 128), where expanding around 0 would lose ``|x|^2 / |y_k|^2``. Measured against a dense
float64 evaluation that forms ``y_k`` (d = 512, K = 3, means ``1e3 + N(0, 1.5^2)``, x drawn from
the mixture): log-density error ``~1e-14`` relative (``~1e-9`` expanded around 0); in float32
(image-like, d = 768, means offset by 100, sigma = 0.002) ``~3e-5`` (0.4 around 0). What is left
is means far apart relative to the component scales (``|mu_j - mu_k| ~ 1e3 sqrt(d)``, variances
~1): x next to one mean has ``|x_c| >> |y_k|`` for any fixed centre, and the log-density there is
good to ``~1e-8`` relative in float64 (measured, d = 512); denoiser, score and
responsibilities stay at round-off, since the responsibilities saturate where the loss occurs.

One noise level per sample (``sigma`` of shape ``[n]``) uses per-sample capacitance matrices and
forms ``y_k = x - mu_k`` explicitly, ``O(n K d r^2)``.

The identities are the standard Woodbury / matrix determinant lemma ones (e.g. Petersen &
Pedersen, *The Matrix Cookbook*, eqs. 156 and 24); no d x d matrix is formed except by the
explicit densifying methods (:meth:`LowRankGaussianMixture.to_dense` and what needs it).
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Optional, Sequence, Tuple

import torch

from samplerlab.theory.validation import check_finite, check_positive_int

from .targets import GaussianMixture, _as_float64, _check_positive, _weights_and_means

__all__ = ["LowRankGaussianMixture", "image_like_mixture"]


class _Level(NamedTuple):
    """Per-noise-level tensors of :meth:`LowRankGaussianMixture._level`."""
    b: torch.Tensor        # diagonal of B^-1 = 1 / (a + sigma^2): [K, d], or [K] if constant
    rho: torch.Tensor      # a / (a + sigma^2), same shape as b
    mat: torch.Tensor      # [K (1 + r), d]: Z^T, Z = B^-1 [mu - c | U] ([mu - c | U] if scale set)
    scale: Optional[torch.Tensor]   # [K] b_k when the diagonal is constant, else None
    linv: torch.Tensor     # [K, r, r] L^-1, L the Cholesky factor of M = I + U^T B^-1 U
    wmu: torch.Tensor      # [K, r] W^T (mu - c)
    mbm: torch.Tensor      # [K] (mu - c)^T B^-1 (mu - c)
    const: torch.Tensor    # [K] log w - (log det V + d log 2 pi) / 2

_DENSE_LIMIT = 4096  # largest d for which the densifying methods run without being asked twice


class LowRankGaussianMixture(GaussianMixture):
    """``sum_k w_k N(mu_k, U_k U_k^T + diag(a_k))`` on R^d, exact in ``O(n K d r)``.

    Parameters
    ----------
    weights : [K] positive weights summing to 1 (within 1e-10).
    means : [K, d] component means.
    factors : [K, d, r] low-rank factors ``U_k`` (``1 <= r <= d``).
    diag : [K, d] positive diagonals ``a_k``, or [K] one value per component (``a_k * 1``).
    event_shape : optional shape of one sample, e.g. ``(3, 32, 32)`` with ``prod == d``;
        :meth:`sample` then returns ``[n, *event_shape]`` (every method already accepts
        ``[n, *event]`` inputs and returns their shape).
    dtype, device : as for :class:`~samplerlab.experiments.targets.GaussianMixture`;
        validation is done in float64.

    It is a :class:`GaussianMixture` (``cov_kind == "low_rank"``): the reference solver, the
    samplers and the metrics take it unchanged. The few quantities that are genuinely ``d x d``
    (:meth:`covariance_matrices`, :attr:`eigenvalues`, :attr:`eigenvectors`,
    :meth:`denoiser_jacobian`, :meth:`moments`) go through :meth:`to_dense`, which refuses
    ``d > 4096`` unless called with ``force=True``.
    """

    def __init__(self, weights, means, factors, diag, *, event_shape: Optional[Sequence[int]] = None,
                 dtype: torch.dtype = torch.float64, device=None):
        w, mu, device = _weights_and_means(weights, means, dtype, device)
        k = w.shape[0]
        u = _as_float64(factors, "factors", device)
        a = _as_float64(diag, "diag", device)
        d = mu.shape[1]
        if u.ndim != 3 or u.shape[0] != k or u.shape[1] != d or u.shape[2] == 0:
            raise ValueError(f"factors must have shape [K, d, r] = [{k}, {d}, r] with r >= 1, "
                             f"got {tuple(u.shape)}")
        if u.shape[2] > d:
            raise ValueError(f"factors must have rank r <= d = {d}, got r = {u.shape[2]} "
                             f"(use a full covariance instead)")
        check_finite(u, "factors")
        if a.ndim == 1 and a.shape == (k,):
            a = a[:, None].expand(k, d).clone()
        elif a.shape != (k, d):
            raise ValueError(f"diag must have shape [K, d] = [{k}, {d}] or [K] = [{k}], "
                             f"got {tuple(a.shape)}")
        check_finite(a, "diag")
        if (a <= 0).any():
            j = int(torch.nonzero((a <= 0).any(dim=1))[0])
            raise ValueError(f"diag must be > 0 everywhere: diag[{j}] has a value "
                             f"{a[j].min().item():.3g}")
        self._event_shape = _check_event_shape(event_shape, d)
        self._init_low_rank(w, mu, u, a, dtype, device)

    def _init_low_rank(self, w, mu, u, a, dtype, device):
        cast = dict(dtype=dtype, device=device)
        k, d, r = u.shape
        self._kind = "low_rank"
        self._weights = w.to(**cast)
        self._log_weights = torch.log(w).to(**cast)
        self._means = mu.to(**cast)
        self._factors = u.to(**cast)                                       # [K, d, r]
        self._diag = a.to(**cast)                                          # [K, d]
        self._log_2pi = math.log(2.0 * math.pi)
        self._eye_r = torch.eye(r, **cast)
        # centring at c = sum_k w_k mu_k (see the module docstring); [mu_k - c | U_k] stacked
        f64 = dict(dtype=torch.float64, device=device)
        mu64 = mu.to(**f64)
        centre = w.to(**f64) @ mu64
        ext = torch.cat([(mu64 - centre)[:, None, :], u.to(**f64).transpose(1, 2)], dim=1)
        self._centre = centre.to(**cast)                                   # [d]
        self._ext = ext.to(**cast)                                         # [K, 1+r, d]
        a64 = a.to(**f64)
        iso = bool((a64 == a64[:, :1]).all())
        self._iso_diag = a64[:, 0].to(**cast) if iso else None             # [K] or None
        self._gram0 = (ext @ ext.transpose(1, 2)).to(**cast) if iso else None     # [K, 1+r, 1+r]
        self._dense = None
        self._cache = {}                                                   # sigma -> per-level tensors

    @classmethod
    def _from_parts(cls, w, mu, u, a, event_shape, dtype, device) -> "LowRankGaussianMixture":
        obj = cls.__new__(cls)
        obj._event_shape = event_shape
        obj._init_low_rank(w, mu, u, a, dtype, device)
        return obj

    def __getstate__(self):
        """Pickled without its caches (per-level tensors, the dense twin): a study's cells send
        the target to worker processes, and at image size the per-level cache alone is tens of
        MB; a worker rebuilds what it uses."""
        state = self.__dict__.copy()
        state["_cache"], state["_dense"] = {}, None
        return state

    # ------------------------------------------------------------------ properties
    @property
    def rank(self) -> int:
        """The rank r of every factor."""
        return self._factors.shape[2]

    @property
    def event_shape(self) -> Tuple[int, ...]:
        """Shape of one sample (``(d,)`` unless given)."""
        return self._event_shape

    @property
    def factors(self) -> torch.Tensor:
        """[K, d, r] factors U_k."""
        return self._factors

    @property
    def diag(self) -> torch.Tensor:
        """[K, d] diagonals a_k."""
        return self._diag

    @property
    def covs(self):
        """``(factors, diag)``: the covariances in the form given."""
        return self._factors, self._diag

    def smallest_variance(self) -> float:
        """A lower bound of the smallest eigenvalue of every ``C_k``: ``min a_k`` (exact when
        ``r < d`` and ``a_k`` is constant), without forming ``C_k``."""
        return float(self._diag.min().item())

    def __repr__(self) -> str:
        return (f"LowRankGaussianMixture(n_components={self.n_components}, dim={self.dim}, "
                f"rank={self.rank}, event_shape={self._event_shape}, dtype={self.dtype}, "
                f"device={self.device})")

    # ------------------------------------------------------------------ conversions
    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "LowRankGaussianMixture":
        """A copy on ``device`` and/or in ``dtype``."""
        device = self.device if device is None else torch.device(device)
        dtype = self.dtype if dtype is None else dtype
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        if device == self.device and dtype == self.dtype:
            return self
        f64 = dict(dtype=torch.float64, device=device)
        return self._from_parts(self._weights.to(**f64), self._means.to(**f64),
                                self._factors.to(**f64), self._diag.to(**f64),
                                self._event_shape, dtype, device)

    def marginal(self, sigma) -> "LowRankGaussianMixture":
        """p_sigma: the same factors with diagonals ``a_k + sigma^2``."""
        s2 = self._scalar_sigma(sigma) ** 2
        return self._from_parts(self._weights, self._means, self._factors, self._diag + s2,
                                self._event_shape, self.dtype, self.device)

    def to_dense(self, *, force: bool = False) -> GaussianMixture:
        """The same law as a full-covariance :class:`GaussianMixture` (``K d^2`` memory,
        ``K d^3`` time); refuses ``d > 4096`` unless ``force=True``."""
        if self._dense is None:
            if self.dim > _DENSE_LIMIT and not force:
                raise ValueError(f"this needs the dense d x d covariances (d = {self.dim} > "
                                 f"{_DENSE_LIMIT}); call to_dense(force=True) first if you mean it")
            f64 = dict(dtype=torch.float64)
            u = self._factors.to(**f64)
            covs = u @ u.transpose(-1, -2) + torch.diag_embed(self._diag.to(**f64))
            self._dense = GaussianMixture(self._weights.to(**f64), self._means.to(**f64), covs,
                                          dtype=self.dtype, device=self.device)
        return self._dense

    @property
    def eigenvalues(self) -> torch.Tensor:
        """[K, d] eigenvalues of each C_k (through :meth:`to_dense`)."""
        return self.to_dense().eigenvalues

    @property
    def eigenvectors(self) -> torch.Tensor:
        """[K, d, d] eigenvectors of each C_k (through :meth:`to_dense`)."""
        return self.to_dense().eigenvectors

    def covariance_matrices(self) -> torch.Tensor:
        """[K, d, d] ``U_k U_k^T + diag(a_k)`` (through :meth:`to_dense`)."""
        return self.to_dense().covariance_matrices()

    def moments(self, sigma=0.0):
        """Mean [d] and covariance [d, d] of p_sigma (through :meth:`to_dense`)."""
        return self.to_dense().moments(sigma)

    def denoiser_jacobian(self, x, sigma) -> torch.Tensor:
        """[n, d, d] dD/dx (through :meth:`to_dense`)."""
        return self.to_dense().denoiser_jacobian(x, sigma)

    # ------------------------------------------------------------------ core evaluation
    def _level(self, s2: float) -> "_Level":
        """Everything that depends on the noise level ``sigma^2 = s2`` but not on ``x`` (cached).

        ``b = 1/(a + s2)`` (the diagonal of ``B^{-1}``); ``Z_k = B_k^{-1} [mu_k - c | U_k]``
        stacked as ``[d, K (1 + r)]`` (general diagonal; for a constant diagonal ``Z`` is the
        fixed ``[mu - c | U]`` and the scalar ``b_k`` multiplies the coefficients instead); the
        Gram blocks ``[mu - c | U]^T B^{-1} [mu - c | U]`` give ``M = I + U^T B^{-1} U``
        (``L^{-1}`` of its Cholesky factor ``L``), ``W^T (mu - c)`` and ``(mu - c)^T B^{-1}
        (mu - c)``; ``rho = a / (a + s2)``;
        the x-free part of the log-joint ``log w - (log det V + d log 2 pi) / 2``."""
        key = float(s2)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        k, d, r = self._factors.shape
        if self._iso_diag is not None:                                     # a_k constant in d
            v = self._iso_diag + s2                                         # [K]
            b = 1.0 / v
            gram = self._gram0 * b[:, None, None]                           # [K, 1+r, 1+r]
            mat, scale = self._ext.view(k * (r + 1), d), b
            logdet_b = d * torch.log(v)
            rho = self._iso_diag * b
        else:
            v = self._diag + s2                                             # [K, d]
            b = 1.0 / v
            z = self._ext * b[:, None, :]                                   # [K, 1+r, d]
            gram = torch.bmm(self._ext, z.transpose(1, 2))
            mat, scale = z.view(k * (r + 1), d), None
            logdet_b = torch.log(v).sum(-1)
            rho = self._diag * b
        chol = torch.linalg.cholesky(self._eye_r + gram[:, 1:, 1:])
        linv = torch.linalg.solve_triangular(chol, self._eye_r.expand_as(chol), upper=False)
        logdet = logdet_b + 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        level = _Level(b=b, rho=rho, mat=mat, scale=scale, linv=linv,
                       wmu=gram[:, 1:, 0].contiguous(), mbm=gram[:, 0, 0].contiguous(),
                       const=self._log_weights - 0.5 * logdet - 0.5 * d * self._log_2pi)
        if len(self._cache) > 64:   # grids revisit a few dozen levels; keep memory bounded
            self._cache.clear()
        self._cache[key] = level
        return level

    def _terms(self, x2: torch.Tensor, s: torch.Tensor):
        """``(r [n, K], w [n, K, r], extra, log_joint [n, K])`` for the batch. For one level,
        ``extra = (level, x - c)``; for one level per sample it holds the per-sample tensors."""
        n, d = x2.shape
        k, _, rk = self._factors.shape
        if s.numel() == 1:
            lv = self._level(float(s.reshape(()).item()) ** 2)
            xc = x2 - self._centre                                          # x - c
            p = (xc @ lv.mat.T).view(n, k, rk + 1)   # [(mu_k - c)^T B_k^-1 xc | W_k^T xc] (/ b_k)
            if lv.scale is None:
                qx = (xc * xc) @ lv.b.T                                     # xc^T B_k^-1 xc
            else:
                p = p * lv.scale[:, None]
                qx = torch.linalg.vector_norm(xc, dim=1).square()[:, None] * lv.b
            t = (p[:, :, 1:] - lv.wmu).transpose(0, 1)                      # [K, n, r] W_k^T y_k
            q = torch.bmm(t, lv.linv.mT)                                    # rows of L^-1 t
            w = torch.bmm(q, lv.linv).transpose(0, 1)                       # [n, K, r] L^-T L^-1 t
            quad = qx - 2.0 * p[:, :, 0] + lv.mbm - (q * q).sum(-1).T       # y^T V^-1 y
            lj = lv.const - 0.5 * quad
            return torch.softmax(lj, dim=1), w, (lv, xc), lj
        # one noise level per sample: per-sample capacitance matrices
        v = self._diag[None] + (s * s)[:, None, None]                        # [n, K, d]
        b = 1.0 / v
        y = x2[:, None, :] - self._means[None]                              # [n, K, d]
        by = b * y
        t = torch.einsum("kdr,nkd->nkr", self._factors, by)
        m = self._eye_r + torch.einsum("kdr,nkd,kds->nkrs", self._factors, b, self._factors)
        chol = torch.linalg.cholesky(m)
        w = torch.cholesky_solve(t[..., None], chol)[..., 0]
        quad = (y * by).sum(-1) - (t * w).sum(-1)
        logdet = torch.log(v).sum(-1) + 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        lj = self._log_weights - 0.5 * quad - 0.5 * logdet - 0.5 * d * self._log_2pi
        return torch.softmax(lj, dim=1), w, (v, y, b), lj

    @staticmethod
    def _coefficients(r, w, lv) -> torch.Tensor:
        """``[r_k | r_k w_k]`` as ``[n, K (1 + r)]``, the left factor of ``(...) @ Z^T`` (times
        ``b_k`` when the diagonal is constant, where ``Z`` carries no ``b``)."""
        n, k, rk = w.shape
        rs = r if lv.scale is None else r * lv.scale
        return torch.cat([rs[:, :, None], rs[:, :, None] * w], dim=2).view(n, k * (rk + 1))

    def _mixed_uw(self, r, w, s2_b_or_b, n, d):
        """``sum_k r_k c_k * (U_k w_k)`` for per-sample ``c`` [n, K, d]."""
        uw = torch.einsum("kdr,nkr->nkd", self._factors, w)
        return (r[:, :, None] * s2_b_or_b * uw).sum(1)

    def responsibilities(self, x, sigma) -> torch.Tensor:
        x2, _ = self._flatten(x)
        return self._terms(x2, self._sigma(sigma, x2))[0]

    def log_prob(self, x, sigma=0.0) -> torch.Tensor:
        x2, _ = self._flatten(x)
        return torch.logsumexp(self._terms(x2, self._sigma(sigma, x2))[3], dim=1)

    def score(self, x, sigma) -> torch.Tensor:
        """``-sum_k r_k V_k^{-1} (x - mu_k) = [r | r w] @ Z^T - (x - c) * (r @ b)``, same shape as
        ``x``."""
        x2, shape = self._flatten(x)
        s = self._sigma(sigma, x2)
        r, w, extra, _ = self._terms(x2, s)
        n, d = x2.shape
        if s.numel() == 1:
            lv, xc = extra
            rb = r @ lv.b                                                   # [n] or [n, d]
            out = xc * (rb if lv.scale is None else rb[:, None])
            return out.addmm_(self._coefficients(r, w, lv), lv.mat, beta=-1.0).reshape(shape)
        v, y, b = extra
        g = (r[:, :, None] * b * y).sum(1) - self._mixed_uw(r, w, b, n, d)
        return (-g).reshape(shape)

    def denoiser(self, x, sigma) -> torch.Tensor:
        """``sum_k r_k (mu_k + rho_k y_k + sigma^2 W_k w_k) = c + (x - c) * (r @ rho) + sigma^2
        [r | r w] @ Z^T``, same shape as ``x``; ``x`` itself where ``sigma == 0``."""
        x2, shape = self._flatten(x)
        s = self._sigma(sigma, x2)
        if s.numel() == 1:
            s2 = float(s.reshape(()).item()) ** 2
            if s2 == 0.0:
                return x2.clone().reshape(shape)
            r, w, (lv, xc), _ = self._terms(x2, s)
            rr = r @ lv.rho                                                 # [n] or [n, d]
            out = torch.addcmul(self._centre, xc, rr if lv.scale is None else rr[:, None])
            return out.addmm_(self._coefficients(r, w, lv), lv.mat, alpha=s2).reshape(shape)
        r, w, (v, y, b), _ = self._terms(x2, s)
        n, d = x2.shape
        rho = self._diag[None] * b
        s2 = (s * s)[:, None, None]
        out = r @ self._means + (r[:, :, None] * rho * y).sum(1) + self._mixed_uw(r, w, s2 * b, n, d)
        out = torch.where((s == 0)[:, None], x2, out)
        return out.reshape(shape)

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, generator=None, sigma=0.0) -> torch.Tensor:
        """``n`` exact samples of p_sigma, shape ``[n, *event_shape]``.

        Draws, in this order, the component indices (``torch.multinomial``), ``z [n, r]`` and
        ``z' [n, d]`` standard normals; returns ``mu_k + U_k z + sqrt(a_k + sigma^2) z'``."""
        n = check_positive_int(n, "n", minimum=0)
        if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
            generator = torch.Generator(device=self.device).manual_seed(int(generator))
        elif generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, an int seed or None, got "
                            f"{type(generator).__name__}")
        k, d, rk = self._factors.shape
        like = torch.empty(max(n, 1), d, dtype=self.dtype, device=self.device)
        s = self._sigma(sigma, like[:n] if n else like)
        cast = dict(dtype=self.dtype, device=self.device, generator=generator)
        idx = torch.multinomial(self._weights, n, replacement=True, generator=generator) \
            if n else torch.zeros(0, dtype=torch.long, device=self.device)
        z = torch.randn(n, rk, **cast)
        z2 = torch.randn(n, d, **cast)
        onehot = torch.nn.functional.one_hot(idx, k).to(self.dtype)
        u_flat = self._factors.permute(1, 0, 2).reshape(d, k * rk)
        low = (onehot[:, :, None] * z[:, None, :]).reshape(n, k * rk) @ u_flat.T
        out = self._means[idx] + low + torch.sqrt(self._diag[idx] + (s * s)[:, None]) * z2
        return out.reshape((n,) + tuple(self._event_shape))


def _check_event_shape(event_shape, d: int) -> Tuple[int, ...]:
    if event_shape is None:
        return (d,)
    try:
        shape = tuple(int(v) for v in event_shape)
    except TypeError:
        raise TypeError(f"event_shape must be a sequence of ints, got {event_shape!r}") from None
    if any(v < 1 for v in shape) or math.prod(shape) != d:
        raise ValueError(f"event_shape must be positive ints with product d = {d}, got {event_shape!r}")
    return shape


def _smooth_fields(g: torch.Generator, count: int, event_shape: Tuple[int, ...],
                   decay: float) -> torch.Tensor:
    """``count`` random fields of shape ``event_shape`` with power spectrum ``~ (1 + |f|^2)^-decay``
    over the last two axes (white across the leading ones), each normalised to unit RMS."""
    shape = tuple(event_shape)
    white = torch.randn((count,) + shape, dtype=torch.float64, generator=g)
    if len(shape) < 2:
        spatial = shape[-1:]
    else:
        spatial = shape[-2:]
    freqs = [torch.fft.fftfreq(m, dtype=torch.float64) * m for m in spatial]
    grid = torch.meshgrid(*freqs, indexing="ij")
    f2 = sum(f * f for f in grid)
    amp = (1.0 + f2) ** (-0.5 * decay)
    dims = tuple(range(-len(spatial), 0))
    field = torch.fft.ifftn(torch.fft.fftn(white, dim=dims) * amp, dim=dims).real
    rms = field.reshape(count, -1).pow(2).mean(-1).sqrt().clamp_min(1e-300)
    return field / rms.reshape((count,) + (1,) * len(shape))


def image_like_mixture(event_shape: Sequence[int] = (3, 32, 32), n_components: int = 10,
                       rank: int = 16, seed: int = 0, *, decay: float = 1.0,
                       mean_scale: float = 1.0, noise_var: float = 1e-2,
                       dtype: torch.dtype = torch.float64, device=None) -> LowRankGaussianMixture:
    """A seeded low-rank mixture whose samples look like smooth images (tests and studies).

    Drawn on the CPU in float64 from ``torch.Generator().manual_seed(seed)``, in this order:
    equal weights; means = ``mean_scale`` x unit-RMS random fields; factors: ``rank`` unit-RMS
    random fields per component, column j scaled by ``(j + 1)^-1 / sqrt(rank)`` (a decaying
    spectrum across the factor's columns); diagonal ``noise_var`` everywhere. The fields have
    power spectrum ``(1 + |f|^2)^-decay`` over the last two axes (``decay = 1``: the ``1/f^2``
    power law of natural images).
    """
    shape = _check_event_shape(event_shape, math.prod(int(v) for v in event_shape))
    k = check_positive_int(n_components, "n_components")
    r = check_positive_int(rank, "rank")
    seed = check_positive_int(seed, "seed", minimum=0)
    d = math.prod(shape)
    if r > d:
        raise ValueError(f"rank must be <= d = {d}, got {rank}")
    decay = _check_positive(decay, "decay")
    mean_scale = _check_positive(mean_scale, "mean_scale")
    noise_var = _check_positive(noise_var, "noise_var")
    g = torch.Generator(device="cpu").manual_seed(seed)
    means = mean_scale * _smooth_fields(g, k, shape, decay).reshape(k, d)
    cols = _smooth_fields(g, k * r, shape, decay).reshape(k, r, d).transpose(1, 2)
    scale = 1.0 / (torch.arange(1, r + 1, dtype=torch.float64) * math.sqrt(r))
    factors = cols * scale
    return LowRankGaussianMixture(torch.full((k,), 1.0 / k, dtype=torch.float64), means, factors,
                                  torch.full((k,), noise_var, dtype=torch.float64),
                                  event_shape=shape, dtype=dtype, device=device)
