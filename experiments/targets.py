"""Exact Gaussian-mixture targets: the "model" of every samplerlab benchmark.

A target is the law ``p_0 = sum_k w_k N(mu_k, C_k)`` on R^d. In the VE/EDM convention
``x = x0 + sigma * eps`` (DESIGN.md) its noised marginal is again a mixture,

    p_sigma = sum_k w_k N(mu_k, C_k + sigma^2 I),

so the denoiser, the score and their derivatives are available in closed form:

* responsibilities  ``r_k(x) = w_k N(x; mu_k, V_k) / p_sigma(x)``, ``V_k = C_k + sigma^2 I``
  (computed with log-sum-exp, so well separated modes never underflow to NaN);
* score             ``grad log p_sigma(x) = sum_k r_k g_k``,  ``g_k = -V_k^{-1} (x - mu_k)``;
* denoiser          ``D(x, sigma) = E[x0 | x] = sum_k r_k (mu_k + C_k V_k^{-1} (x - mu_k))``
  (Tweedie: ``D = x + sigma^2 grad log p_sigma``);
* Jacobian          ``dD/dx = sum_k r_k C_k V_k^{-1} + sigma^2 sum_k r_k (g_k - g)(g_k - g)^T``
  with ``g = sum_k r_k g_k`` (symmetric; equals ``I + sigma^2 Hess log p_sigma``).

Each covariance is factorised once, ``C_k = U_k diag(e_k) U_k^T``; then ``V_k^{-1}`` and
``C_k V_k^{-1}`` are diagonal in the eigenbasis (``1/(e_k + sigma^2)`` and
``e_k/(e_k + sigma^2)``) and no noise level ever needs a new factorisation. For full covariances
all K eigenbases are stacked into one ``[d, K*d]`` matrix, so the change to every eigenbasis and
the weighted sum back are two matrix products for the whole batch (no loop over samples or
components). Diagonal and isotropic covariances skip the rotation entirely.

The closed forms are the standard Gaussian conditioning identities; the eigenbasis evaluation
follows research note notes-amed-and-diff-sampler.md, Part C1 (/work/shared/papers).
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence, Tuple

import torch

from samplerlab.theory.validation import (as_sigma_tensor, check_finite, check_noise_level,
                                          check_positive_int)

__all__ = ["GaussianMixture"]

_COV_KINDS = ("full", "diagonal", "isotropic")


_HALF = (torch.float16, torch.bfloat16)


def _as_float64(value, name: str, device) -> torch.Tensor:
    """Convert a tensor/array/sequence/number to a float64 tensor on ``device`` (for validation)."""
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be real-valued, got dtype {value.dtype}")
        return value.detach().to(device=device, dtype=torch.float64)
    try:
        return torch.as_tensor(value, dtype=torch.float64, device=device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be a tensor, array or nested sequence of numbers "
                        f"({exc})") from None


def _weights_and_means(weights, means, dtype, device):
    """Validated float64 ``(weights [K], means [K, d], device)`` of a mixture (shared by every
    covariance form), after checking ``dtype``; ``device`` defaults to that of ``means``."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    if device is None:
        device = means.device if isinstance(means, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)
    w = _as_float64(weights, "weights", device)
    mu = _as_float64(means, "means", device)
    if w.ndim != 1 or w.numel() == 0:
        raise ValueError(f"weights must have shape [K] with K >= 1, got {tuple(w.shape)}")
    k = w.shape[0]
    check_finite(w, "weights")
    if (w <= 0).any():
        raise ValueError("weights must all be > 0")
    if abs(w.sum().item() - 1.0) > 1e-10:
        raise ValueError(f"weights must sum to 1 (within 1e-10), got sum {w.sum().item()!r}")
    if mu.ndim != 2 or mu.shape[0] != k or mu.shape[1] == 0:
        raise ValueError(f"means must have shape [K, d] = [{k}, d] (for d = 1 use "
                         f"means[:, None]), got {tuple(mu.shape)}")
    check_finite(mu, "means")
    return w, mu, device


class GaussianMixture:
    """A Gaussian mixture ``sum_k w_k N(mu_k, C_k)`` on R^d with exact noised quantities.

    Parameters
    ----------
    weights : [K] positive mixture weights summing to 1 (within 1e-10).
    means : [K, d] component means (for d = 1 pass shape [K, 1]).
    covs : the component covariances, in one of three forms, told apart by their number of
        dimensions:

        * ``[K, d, d]`` full symmetric positive-definite matrices (``cov_kind == "full"``);
        * ``[K, d]`` the diagonals of diagonal covariances (``"diagonal"``);
        * ``[K]`` one variance per component, ``C_k = covs[k] * I`` (``"isotropic"``).
    dtype : floating dtype of every tensor the target holds and returns (default float64).
        Validation and the eigendecompositions are always done in float64.
    device : device of the target; default: the device of ``means`` if it is a tensor, else CPU.

    Conventions
    -----------
    VE/EDM: ``x = x0 + sigma * eps``. Every method takes ``x`` of shape ``[n, d]`` or
    ``[n, *event]`` with ``prod(event) == d`` (e.g. images ``[n, c, h, w]``; for d = 1 also
    ``[n]``), flattens the event dimensions and restores them in the output. ``x`` must have the
    target's dtype and device (use :meth:`to`). ``sigma`` is a Python number, a 0-d tensor or a
    tensor of shape ``[n]`` (one level per sample), all ``>= 0``.

    Named constructors: :meth:`two_mode_1d`, :meth:`ring_2d`, :meth:`grid_2d`,
    :meth:`random_anisotropic`, :meth:`single_gaussian`.
    """

    # ------------------------------------------------------------------ construction
    def __init__(self, weights, means, covs, *, dtype: torch.dtype = torch.float64,
                 device=None):
        w, mu, device = _weights_and_means(weights, means, dtype, device)
        k, d = mu.shape
        c = _as_float64(covs, "covs", device)
        check_finite(c, "covs")

        if c.ndim == 3:
            if c.shape != (k, d, d):
                raise ValueError(f"covs (full) must have shape [K, d, d] = [{k}, {d}, {d}], "
                                 f"got {tuple(c.shape)}")
            scale = c.abs().amax(dim=(-2, -1)).clamp_min(torch.finfo(torch.float64).tiny)
            asym = (c - c.transpose(-1, -2)).abs().amax(dim=(-2, -1))
            if (asym > 1e-10 * scale).any():
                bad = int(torch.argmax(asym / scale))
                raise ValueError(f"covs must be symmetric: covs[{bad}] differs from its transpose "
                                 f"by {asym[bad].item():.3g}")
            c = 0.5 * (c + c.transpose(-1, -2))
            evals, evecs = torch.linalg.eigh(c)
            kind = "full"
        elif c.ndim == 2:
            if c.shape != (k, d):
                raise ValueError(f"covs (diagonal) must have shape [K, d] = [{k}, {d}], "
                                 f"got {tuple(c.shape)}")
            evals, evecs, kind = c.clone(), None, "diagonal"
        elif c.ndim == 1:
            if c.shape != (k,):
                raise ValueError(f"covs (isotropic) must have shape [K] = [{k}], "
                                 f"got {tuple(c.shape)}")
            evals, evecs, kind = c[:, None].expand(k, d).clone(), None, "isotropic"
        else:
            raise ValueError(f"covs must have shape [K, d, d] (full), [K, d] (diagonal) or [K] "
                             f"(isotropic), got {tuple(c.shape)}")
        emax = evals.abs().amax(dim=1)
        emin = evals.amin(dim=1)
        bad = emin <= 1e-13 * emax
        if bad.any():
            j = int(torch.nonzero(bad)[0])
            raise ValueError(f"covs must be positive-definite: covs[{j}] has smallest eigenvalue "
                             f"{emin[j].item():.3g} (largest {emax[j].item():.3g})")
        self._init_from_eig(w, mu, evals, evecs, kind, c, dtype, device)

    def _init_from_eig(self, w, mu, evals, evecs, kind, covs, dtype, device):
        """Store the validated float64 parameters (and derived tensors) in ``dtype``/``device``.

        Range (``ValueError`` naming ``means``): the squared distances the evaluation forms,
        ``(|mu|_max + sqrt(e_max))^2 / e_min``, must stay 1e8 below the largest number of the
        compute dtype (float32 for the half types), so that every point of the mixture's extent
        has a finite log-density (beyond it the log-sum-exp of -inf's is NaN). Half types
        (float16, bfloat16) evaluate in float32 and cast the result back: their range (65504)
        would overflow ``|x|^2`` at sigma = 80."""
        work = torch.float32 if dtype in _HALF else dtype
        reach = (mu.abs().max() + evals.abs().max().sqrt()) ** 2 / evals.min()
        if not bool(reach <= torch.finfo(work).max * 1e-8):
            raise ValueError(
                f"means/covs out of range for {dtype} (computed in {work}): squared distances "
                f"of {float(reach):.3g} (|means| up to {float(mu.abs().max()):.3g}, covariance "
                f"eigenvalues {float(evals.min()):.3g} .. {float(evals.max()):.3g}) exceed "
                f"{torch.finfo(work).max * 1e-8:.3g}; rescale the means (and covs)")
        big = torch.finfo(dtype).max
        for name, arr in (("means", mu), ("covs", evals), ("covs", covs)):
            if not bool(arr.abs().max() < big):
                raise ValueError(f"{name} are not representable in {dtype} (largest "
                                 f"{float(arr.abs().max()):.3g} > {big:.3g}); use a wider dtype")
        self._work = (None if work == dtype else
                      self._from_eig(w, mu, evals, evecs, kind, covs, work, device))
        cast = dict(dtype=dtype, device=device)
        self._kind = kind
        self._weights = w.to(**cast)
        self._log_weights = torch.log(w).to(**cast)
        self._means = mu.to(**cast)
        self._covs = covs.to(**cast)
        self._eigvals = evals.to(**cast)                       # [K, d]
        self._log_2pi = math.log(2.0 * math.pi)
        if evecs is None:
            self._eigvecs = None
            self._u_flat = None
            self._means_rot = self._means
        else:
            k, d = mu.shape
            self._eigvecs = evecs.to(**cast)                   # [K, d, d], columns = eigenvectors
            # U_flat[i, k*d + e] = U_k[i, e]: x @ U_flat gives every component's eigen-coordinates.
            self._u_flat = evecs.permute(1, 0, 2).reshape(d, k * d).to(**cast).contiguous()
            self._means_rot = torch.einsum("kie,ki->ke", evecs, mu).to(**cast)  # U_k^T mu_k
            self._neg_means_rot_flat = -self._means_rot.reshape(k * d)
        self._eye_k = torch.eye(mu.shape[0], **cast)

    @classmethod
    def _from_eig(cls, w, mu, evals, evecs, kind, covs, dtype, device) -> "GaussianMixture":
        obj = cls.__new__(cls)
        obj._init_from_eig(w, mu, evals, evecs, kind, covs, dtype, device)
        return obj

    # ------------------------------------------------------------------ named targets
    @classmethod
    def two_mode_1d(cls, weights: Sequence[float] = (0.3, 0.7), means: Sequence[float] = (-1.0, 1.0),
                    stds: Sequence[float] = (0.2, 0.35), *, dtype=torch.float64,
                    device=None) -> "GaussianMixture":
        """The 1-D two-mode test mixture of notes-fdpmsolver-and-lagrange-sampler.md §3:
        weights 0.3/0.7, means -1/+1, standard deviations 0.2/0.35 (all overridable)."""
        mu = torch.as_tensor(means, dtype=torch.float64)
        sd = torch.as_tensor(stds, dtype=torch.float64)
        if mu.ndim != 1 or sd.shape != mu.shape:
            raise ValueError(f"means and stds must be 1-D of equal length, got {tuple(mu.shape)} "
                             f"and {tuple(sd.shape)}")
        return cls(weights, mu[:, None], sd ** 2, dtype=dtype, device=device)

    @classmethod
    def ring_2d(cls, n_modes: int = 8, radius: float = 2.0, std: float = 0.2, *,
                dtype=torch.float64, device=None) -> "GaussianMixture":
        """``n_modes`` equal-weight isotropic modes (standard deviation ``std``) at the angles
        ``2 pi j / n_modes`` on the circle of radius ``radius`` centred at 0."""
        n_modes = check_positive_int(n_modes, "n_modes")
        _check_positive(radius, "radius")
        _check_positive(std, "std")
        ang = 2.0 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
        mu = radius * torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)
        w = torch.full((n_modes,), 1.0 / n_modes, dtype=torch.float64)
        return cls(w, mu, torch.full((n_modes,), std ** 2, dtype=torch.float64),
                   dtype=dtype, device=device)

    @classmethod
    def grid_2d(cls, n: int = 3, spacing: float = 2.0, std: float = 0.2, *,
                dtype=torch.float64, device=None) -> "GaussianMixture":
        """``n x n`` equal-weight isotropic modes (standard deviation ``std``) on a square grid
        of step ``spacing`` centred at the origin."""
        n = check_positive_int(n, "n")
        _check_positive(spacing, "spacing")
        _check_positive(std, "std")
        ticks = spacing * (torch.arange(n, dtype=torch.float64) - 0.5 * (n - 1))
        gx, gy = torch.meshgrid(ticks, ticks, indexing="ij")
        mu = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
        k = n * n
        return cls(torch.full((k,), 1.0 / k, dtype=torch.float64), mu,
                   torch.full((k,), std ** 2, dtype=torch.float64), dtype=dtype, device=device)

    @classmethod
    def random_anisotropic(cls, d: int, n_components: int, seed: int, *, mean_scale: float = 2.0,
                           eig_range: Tuple[float, float] = (0.01, 1.0),
                           dtype=torch.float64, device=None) -> "GaussianMixture":
        """A seeded random mixture with full, anisotropic covariances.

        Drawn on the CPU in float64 from ``torch.Generator().manual_seed(seed)`` (so the same seed
        gives the same target on every device), in this order:

        * weights ``w = 1/(2K) + v/2`` with ``v ~ Dirichlet(1, ..., 1)`` (no tiny weights);
        * means ``mu_k ~ N(0, mean_scale^2 I)``;
        * eigenvalues log-uniform in ``eig_range`` (spread over the whole range);
        * rotations ``U_k`` Haar-distributed (QR of a Gaussian matrix with the sign fix),
          ``C_k = U_k diag(e_k) U_k^T``.
        """
        d = check_positive_int(d, "d")
        k = check_positive_int(n_components, "n_components")
        seed = check_positive_int(seed, "seed", minimum=0)
        _check_positive(mean_scale, "mean_scale")
        lo, hi = (float(v) for v in eig_range)
        if not (0.0 < lo <= hi and math.isfinite(hi)):
            raise ValueError(f"eig_range must be (low, high) with 0 < low <= high, got {eig_range!r}")
        g = torch.Generator(device="cpu").manual_seed(seed)
        f64 = dict(dtype=torch.float64, generator=g)
        expo = -torch.log(torch.rand(k, **f64).clamp_min(1e-300))
        w = 0.5 / k + 0.5 * expo / expo.sum()
        w = w / w.sum()
        mu = mean_scale * torch.randn(k, d, **f64)
        evals = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(k, d, **f64))
        q, r = torch.linalg.qr(torch.randn(k, d, d, **f64))
        q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
        covs = q @ torch.diag_embed(evals) @ q.transpose(-1, -2)
        return cls(w, mu, 0.5 * (covs + covs.transpose(-1, -2)), dtype=dtype, device=device)

    @classmethod
    def single_gaussian(cls, mean, cov, *, dtype=torch.float64, device=None) -> "GaussianMixture":
        """One Gaussian ``N(mean, cov)``: ``mean`` of shape [d]; ``cov`` a [d, d] matrix, a [d]
        diagonal or a scalar variance."""
        if device is None and isinstance(mean, torch.Tensor):
            device = mean.device
        dev = torch.device("cpu") if device is None else torch.device(device)
        m = _as_float64(mean, "mean", dev)
        c = _as_float64(cov, "cov", dev)
        if m.ndim != 1:
            raise ValueError(f"mean must have shape [d], got {tuple(m.shape)}")
        if c.ndim > 2:
            raise ValueError(f"cov must be [d, d], [d] or a scalar, got shape {tuple(c.shape)}")
        return cls(torch.ones(1, dtype=torch.float64, device=dev), m[None], c[None],
                   dtype=dtype, device=dev)

    @classmethod
    def low_rank(cls, weights, means, factors, diag, *, event_shape=None, dtype=torch.float64,
                 device=None) -> "GaussianMixture":
        """Covariances ``U_k U_k^T + diag(a_k)`` (factors ``[K, d, r]``, diag ``[K, d]`` or
        ``[K]``), exact in ``O(n K d r)`` without d x d matrices: a
        :class:`~samplerlab.experiments.low_rank_mixture.LowRankGaussianMixture`."""
        from .low_rank_mixture import LowRankGaussianMixture
        return LowRankGaussianMixture(weights, means, factors, diag, event_shape=event_shape,
                                      dtype=dtype, device=device)

    @classmethod
    def image_like(cls, event_shape=(3, 32, 32), n_components: int = 10, rank: int = 16,
                   seed: int = 0, **kwargs) -> "GaussianMixture":
        """A seeded low-rank mixture of smooth, image-shaped samples with a decaying spectrum
        (:func:`~samplerlab.experiments.low_rank_mixture.image_like_mixture`)."""
        from .low_rank_mixture import image_like_mixture
        return image_like_mixture(event_shape, n_components, rank, seed, **kwargs)

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Dimension d of the space."""
        return self._means.shape[1]

    @property
    def n_components(self) -> int:
        """Number of components K."""
        return self._means.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self._means.dtype

    @property
    def device(self) -> torch.device:
        return self._means.device

    @property
    def cov_kind(self) -> str:
        """``"full"``, ``"diagonal"`` or ``"isotropic"`` (the form ``covs`` was given in)."""
        return self._kind

    @property
    def weights(self) -> torch.Tensor:
        """[K] mixture weights."""
        return self._weights

    @property
    def means(self) -> torch.Tensor:
        """[K, d] component means."""
        return self._means

    @property
    def covs(self) -> torch.Tensor:
        """The covariances in the form given (``[K, d, d]``, ``[K, d]`` or ``[K]``)."""
        return self._covs

    @property
    def eigenvalues(self) -> torch.Tensor:
        """[K, d] eigenvalues e_k of each covariance (ascending for full covariances)."""
        return self._eigvals

    @property
    def eigenvectors(self) -> torch.Tensor:
        """[K, d, d] orthonormal eigenvectors U_k (columns); identity for diagonal/isotropic."""
        if self._eigvecs is None:
            eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
            return eye.expand(self.n_components, -1, -1)
        return self._eigvecs

    def smallest_variance(self) -> float:
        """The smallest eigenvalue of any component covariance (a lower bound for
        structured covariances that never form them)."""
        return float(self._eigvals.min().item())

    def covariance_matrices(self) -> torch.Tensor:
        """[K, d, d] full covariance matrices C_k, whatever form they were given in."""
        if self._kind == "full":
            return self._covs
        return torch.diag_embed(self._eigvals)

    def moments(self, sigma=0.0) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean [d] and covariance [d, d] of the noised marginal p_sigma:
        ``m = sum w_k mu_k``, ``S = sum w_k (C_k + sigma^2 I + (mu_k - m)(mu_k - m)^T)``."""
        s = self._scalar_sigma(sigma)
        m = self._weights @ self._means
        dm = self._means - m
        cov = torch.einsum("k,kij->ij", self._weights, self.covariance_matrices())
        cov = cov + torch.einsum("k,ki,kj->ij", self._weights, dm, dm)
        return m, cov + s ** 2 * torch.eye(self.dim, dtype=self.dtype, device=self.device)

    def __repr__(self) -> str:
        return (f"GaussianMixture(n_components={self.n_components}, dim={self.dim}, "
                f"cov_kind={self._kind!r}, dtype={self.dtype}, device={self.device})")

    # ------------------------------------------------------------------ conversions
    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "GaussianMixture":
        """A copy on ``device`` and/or in ``dtype`` (the eigendecompositions are reused)."""
        device = self.device if device is None else torch.device(device)
        dtype = self.dtype if dtype is None else dtype
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        if device == self.device and dtype == self.dtype:
            return self
        f64 = dict(dtype=torch.float64, device=device)
        evecs = None if self._eigvecs is None else self._eigvecs.to(**f64)
        return self._from_eig(self._weights.to(**f64), self._means.to(**f64),
                              self._eigvals.to(**f64), evecs, self._kind, self._covs.to(**f64),
                              dtype, device)

    def marginal(self, sigma) -> "GaussianMixture":
        """The noised law p_sigma = sum_k w_k N(mu_k, C_k + sigma^2 I) as a GaussianMixture
        (same covariance form; eigenvectors reused, eigenvalues shifted by sigma^2)."""
        s2 = self._scalar_sigma(sigma) ** 2
        covs = self._covs
        if self._kind == "full":
            covs = covs + s2 * torch.eye(self.dim, dtype=self.dtype, device=self.device)
        else:
            covs = covs + s2
        return self._from_eig(self._weights, self._means, self._eigvals + s2, self._eigvecs,
                              self._kind, covs, self.dtype, self.device)

    # ------------------------------------------------------------------ validation helpers
    def _to_work(self, x, sigma):
        """``x`` (checked against the target's dtype/device) and ``sigma`` in the compute dtype."""
        self._flatten(x)
        if isinstance(sigma, torch.Tensor) and sigma.is_floating_point():
            sigma = sigma.to(self._work.dtype)
        return x.to(self._work.dtype), sigma

    def _scalar_sigma(self, sigma) -> float:
        return check_noise_level(sigma, "sigma")

    def _flatten(self, x) -> Tuple[torch.Tensor, torch.Size]:
        """Check ``x`` and return it as ``[n, d]`` together with its original shape."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape [n, d], got {type(x).__name__}")
        if x.dtype != self.dtype or x.device != self.device:
            raise TypeError(f"x has dtype {x.dtype} on {x.device} but the target has dtype "
                            f"{self.dtype} on {self.device}; convert with x.to(...) or "
                            f"target.to(device=..., dtype=...)")
        if x.ndim == 0:
            raise ValueError(f"x must have shape [n, d] = [n, {self.dim}] or [n, *event] with "
                             f"prod(event) = {self.dim}, got a 0-d tensor")
        event = x.shape[1:]
        if math.prod(event) != self.dim:
            raise ValueError(f"x must have shape [n, d] = [n, {self.dim}] or [n, *event] with "
                             f"prod(event) = {self.dim}, got {tuple(x.shape)}")
        return x.reshape(x.shape[0], self.dim), x.shape

    def _sigma(self, sigma, x2: torch.Tensor) -> torch.Tensor:
        """``sigma`` as a tensor of shape [n] or [1] (target's dtype/device), validated."""
        if isinstance(sigma, bool):
            raise TypeError("sigma must be a number or a tensor, got bool")
        s = as_sigma_tensor(sigma, x2, "sigma")
        return s.reshape(-1)

    # ------------------------------------------------------------------ core evaluation
    def _components(self, x2: torch.Tensor, s: torch.Tensor):
        """Eigen-coordinates ``y = U_k^T (x - mu_k)`` ``[n, K, d]``, variances ``v = e_k + sigma^2``
        (``[K, d]`` for one noise level, ``[n, K, d]`` for one per sample) and the component
        log-joint ``log w_k + log N(x; mu_k, V_k)`` ``[n, K]``."""
        n, d = x2.shape
        k = self.n_components
        if self._u_flat is None:
            y = x2[:, None, :] - self._means[None]
        else:                                      # all K rotations in one GEMM
            y = torch.addmm(self._neg_means_rot_flat, x2, self._u_flat).view(n, k, d)
        s2 = s * s
        if s.numel() == 1:
            v = self._eigvals + s2                                       # [K, d]
            # sum_e y_ke^2 / v_ke for all k as one GEMM with a block-diagonal [K*d, K] matrix
            block = ((1.0 / v)[:, :, None] * self._eye_k[:, None, :]).reshape(k * d, k)
            quad = (y * y).view(n, k * d) @ block
        else:
            v = self._eigvals[None] + s2[:, None, None]                  # [n, K, d]
            quad = (y * y / v).sum(-1)
        log_joint = (self._log_weights - 0.5 * quad - 0.5 * torch.log(v).sum(-1)
                     - 0.5 * d * self._log_2pi)
        return y, v, log_joint

    def _mix(self, r: torch.Tensor, y: torch.Tensor, x2: torch.Tensor,
             scale: torch.Tensor) -> torch.Tensor:
        """``sum_k r_k U_k diag(scale_k) y_k`` -> ``[n, d]`` (``scale`` ``[K, d]`` or ``[n, K, d]``)."""
        n, k, d = y.shape
        if scale.ndim == 2:
            if self._u_flat is None:   # y_k = x - mu_k: two [n, K] x [K, d] products, no [n, K, d]
                return x2 * (r @ scale) - r @ (scale * self._means)
            rotate = (self._u_flat * scale.reshape(1, k * d)).T          # [K*d, d]
            return (y * r[:, :, None]).view(n, k * d) @ rotate
        z = r[:, :, None] * scale * y
        if self._u_flat is None:
            return z.sum(1)
        return z.view(n, k * d) @ self._u_flat.T

    def responsibilities(self, x, sigma) -> torch.Tensor:
        """[n, K] posterior component probabilities ``r_k(x)`` under p_sigma (log-sum-exp)."""
        if self._work is not None:  # half types: evaluate in float32, cast back
            xw, sw = self._to_work(x, sigma)
            return self._work.responsibilities(xw, sw).to(self.dtype)
        x2, _ = self._flatten(x)
        _, _, lj = self._components(x2, self._sigma(sigma, x2))
        return torch.softmax(lj, dim=1)

    def log_prob(self, x, sigma=0.0) -> torch.Tensor:
        """[n] ``log p_sigma(x)`` (log-sum-exp over components)."""
        if self._work is not None:  # half types: evaluate in float32, cast back
            xw, sw = self._to_work(x, sigma)
            return self._work.log_prob(xw, sw).to(self.dtype)
        x2, _ = self._flatten(x)
        _, _, lj = self._components(x2, self._sigma(sigma, x2))
        return torch.logsumexp(lj, dim=1)

    def score(self, x, sigma) -> torch.Tensor:
        """``grad_x log p_sigma(x) = -sum_k r_k V_k^{-1} (x - mu_k)``, same shape as ``x``."""
        if self._work is not None:  # half types: evaluate in float32, cast back
            xw, sw = self._to_work(x, sigma)
            return self._work.score(xw, sw).to(self.dtype)
        x2, shape = self._flatten(x)
        y, v, lj = self._components(x2, self._sigma(sigma, x2))
        r = torch.softmax(lj, dim=1)
        return (-self._mix(r, y, x2, 1.0 / v)).reshape(shape)

    def denoiser(self, x, sigma) -> torch.Tensor:
        """``E[x0 | x0 + sigma eps = x] = sum_k r_k (mu_k + C_k V_k^{-1} (x - mu_k))``, same
        shape as ``x``; returns ``x`` itself where ``sigma == 0``."""
        if self._work is not None:  # half types: evaluate in float32, cast back
            xw, sw = self._to_work(x, sigma)
            return self._work.denoiser(xw, sw).to(self.dtype)
        x2, shape = self._flatten(x)
        s = self._sigma(sigma, x2)
        y, v, lj = self._components(x2, s)
        r = torch.softmax(lj, dim=1)
        out = r @ self._means + self._mix(r, y, x2, self._eigvals / v)
        out = torch.where((s == 0)[:, None], x2, out)
        return out.reshape(shape)

    def denoiser_jacobian(self, x, sigma) -> torch.Tensor:
        """[n, d, d] ``dD/dx = sum_k r_k C_k V_k^{-1} + sigma^2 Cov_r(g)`` (symmetric), with
        ``g_k = -V_k^{-1}(x - mu_k)``; the identity where ``sigma == 0``. ``x`` of image shape
        is flattened: the Jacobian is always ``[n, d, d]``."""
        if self._work is not None:  # half types: evaluate in float32, cast back
            xw, sw = self._to_work(x, sigma)
            return self._work.denoiser_jacobian(xw, sw).to(self.dtype)
        x2, _ = self._flatten(x)
        s = self._sigma(sigma, x2)
        y, v, lj = self._components(x2, s)
        n, d = x2.shape
        r = torch.softmax(lj, dim=1)
        ratio = r[..., None] * (self._eigvals[None] / v)                 # [n, K, d]
        if self._eigvecs is None:
            g = -y / v                                                   # [n, K, d]
            jac = torch.diag_embed(ratio.sum(1))
        else:
            u = self._eigvecs
            g = -torch.einsum("kie,nke->nki", u, y / v)
            jac = torch.einsum("kie,nke,kje->nij", u, ratio, u)
        gc = g - torch.einsum("nk,nki->ni", r, g)[:, None, :]
        jac = jac + (s * s).reshape(-1, 1, 1) * torch.einsum("nk,nki,nkj->nij", r, gc, gc)
        eye = torch.eye(d, dtype=self.dtype, device=self.device).expand(n, d, d)
        return torch.where((s == 0).reshape(-1, 1, 1), eye, jac)

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, generator=None, sigma=0.0) -> torch.Tensor:
        """``n`` exact samples ``[n, d]`` of p_sigma (sigma a number, 0-d tensor or ``[n]``).

        Draws, in this order, the component indices (``torch.multinomial``) and the standard
        normals ``z [n, d]``; returns ``mu_k + U_k diag(sqrt(e_k + sigma^2)) z``.
        ``generator``: a ``torch.Generator`` on the target's device, an int seed, or None (torch's
        global generator)."""
        n = check_positive_int(n, "n")
        if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
            generator = torch.Generator(device=self.device).manual_seed(int(generator))
        elif generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, an int seed or None, got "
                            f"{type(generator).__name__}")
        like = torch.empty(n, self.dim, dtype=self.dtype, device=self.device)
        s = self._sigma(sigma, like)
        idx = torch.multinomial(self._weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, dtype=self.dtype, device=self.device, generator=generator)
        scaled = torch.sqrt(self._eigvals[idx] + (s * s)[:, None]) * z
        if self._eigvecs is None:
            return self._means[idx] + scaled
        onehot = torch.nn.functional.one_hot(idx, self.n_components).to(self.dtype)
        return self._means[idx] + (onehot[..., None] * scaled[:, None, :]).view(n, -1) @ self._u_flat.T


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return v
