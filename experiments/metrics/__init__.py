"""Error metrics: numerical defect of samples, and total-variation (TV) distance estimators.

Interfaces (plain callables, so any target or sampler fits)
-----------------------------------------------------------
* ``LogProb``: ``log_prob(y: Tensor[n, d]) -> Tensor[n]``, a *normalised* log density
  (e.g. ``lambda y: mixture.log_prob(y, sigma)``). ``-inf`` is allowed where the density is 0.
* ``DeterministicMap``: ``sampler_map(x: Tensor[n, d]) -> Tensor[n, d]``, a deterministic sampler
  seen as the map from starting points to outputs. It must be *row-wise* (output row i depends on
  input row i only — no batch statistics), differentiable by torch autograd, and injective (a
  diffeomorphism onto its image, as a PF-ODE discretisation is for small enough steps). In 1-D
  d = 1, i.e. tensors of shape [n, 1].
* ``GaussianTransition``: ``transition(x: Tensor[n, d]) -> (mean: Tensor[n, d], std)``, with
  ``std`` a tensor broadcastable to ``mean``: one stochastic step ``x_{k+1} ~ N(mean(x_k),
  diag std(x_k)^2)``. A stochastic sampler is a sequence of these (the 1-D grid method uses d = 1).

TV(p, q) = sup_A |p(A) - q(A)| = 1/2 int |p - q| = int (q - p)_+ throughout (values in [0, 1]).

One module per idea: :mod:`.defect`, :mod:`.gaussian`, :mod:`.pushforward`, :mod:`.density_1d`
(and :mod:`.density_2d`, :mod:`.density_chain_2d`), :mod:`.sample_based`; every public name is re-exported here.

Estimators (they cross-check each other in tests/test_metrics.py)
------------------------------------------------------------------
(a) closed forms for Gaussians: :func:`tv_gaussian_1d` (exact, any two 1-D Gaussians),
    :func:`tv_gaussian_same_cov` (exact, equal covariances, any d), :func:`kl_gaussian`,
    :func:`w2_gaussian`, :func:`hellinger_gaussian`, :func:`tv_bounds_gaussian`;
(b) :func:`tv_pushforward`: importance sampling through a deterministic map with the exact
    change-of-variables output density (low d);
(c) :func:`tv_density_1d_deterministic` and :func:`tv_density_1d_stochastic`: density propagation
    on a 1-D grid by quadrature, no Monte-Carlo noise (measured ~1e-16 against exact Gaussian
    cases; the masses ``|1 - mass|`` flag a grid that does not cover or resolve the densities —
    the default ``mass_tol=1e-8`` assumes float64);
(c') :func:`tv_density_2d_deterministic` (change of variables over a 2-D quadrature grid of
    starting points) and :func:`tv_chain_density_2d` (a 2-D chain of Gaussian convolutions and
    diffeomorphisms, i.e. any linear-step sampler, stochastic or not, propagated on a fresh grid
    per level): exact-density TV in d = 2 with a half-resolution error estimate;
(d) :func:`tv_histogram` and :func:`tv_kde`: sample-based fall-backs in 1-D and 2-D (biased by
    binning/smoothing and by noise; for rough cross-checks only).

The numerical defect (:func:`defect`, :func:`signed_error`) measures per-sample distances to a
reference endpoint (e.g. the exact PF-ODE solution from the same starting point).

Every tensor routine keeps the device and dtype of its inputs (float64 for verification). Scalar
closed forms return Python floats.
"""
from .defect import DefectSummary, defect, signed_error
from .gaussian import tv_gaussian_1d, tv_gaussian_same_cov, kl_gaussian, w2_gaussian, hellinger_gaussian, tv_bounds_gaussian
from .pushforward import MCEstimate, log_density_pushforward, tv_pushforward
from .density_1d import GridTV, tv_density_1d_deterministic, propagate_density_1d, tv_density_1d_stochastic, half_l1_1d
from .sample_based import tv_histogram, tv_kde
from .density_2d import GridTV2D, tv_density_2d_deterministic
from .density_chain_2d import ChainStep, GridDensity2D, propagate_chain_density_2d, tv_chain_density_2d

__all__ = ['DefectSummary', 'defect', 'signed_error', 'tv_gaussian_1d', 'tv_gaussian_same_cov', 'kl_gaussian', 'w2_gaussian', 'hellinger_gaussian', 'tv_bounds_gaussian', 'MCEstimate', 'log_density_pushforward', 'tv_pushforward', 'GridTV', 'tv_density_1d_deterministic', 'propagate_density_1d', 'tv_density_1d_stochastic', 'tv_histogram', 'tv_kde', 'half_l1_1d', 'GridTV2D', 'tv_density_2d_deterministic', 'ChainStep', 'GridDensity2D', 'propagate_chain_density_2d', 'tv_chain_density_2d']
