"""Noise plans of the stochastic samplers: how much noise is injected where.

Two standard ways to turn a deterministic single-step method into a sampler of the reverse SDE:

* **ancestral** (DDIM-eta / Euler-ancestral, Song et al. 2021; k-diffusion's ``get_ancestral_step``):
  step deterministically from ``sigma_n`` to ``sigma_down`` and add ``sigma_up * z`` with
  ``sigma_up = min(sigma_{n+1}, eta * sqrt(sigma_{n+1}^2 (sigma_n^2 - sigma_{n+1}^2) / sigma_n^2))``,
  ``sigma_down = sqrt(sigma_{n+1}^2 - sigma_up^2)``. eta = 1 is DDPM's posterior variance in VE
  units; eta = 0 is the deterministic sampler.
* **churn** (EDM, Karras et al. 2022, Alg. 2; RES Alg. 2): lift the noise level to
  ``sigma_hat = sigma_n (1 + gamma)`` by adding ``sqrt(sigma_hat^2 - sigma_n^2) * z`` and step
  deterministically from ``sigma_hat`` to ``sigma_{n+1}``.
"""
from __future__ import annotations

import numpy as np

from ._checks import check_in_range

__all__ = ["ancestral_split", "churn_levels"]


def ancestral_split(sigma_from, sigma_to, eta: float = 1.0):
    """Return ``(sigma_down, sigma_up)`` (numpy float64 arrays) of the ancestral step."""
    eta = check_in_range(eta, "eta", 0.0, None)
    sf = np.asarray(sigma_from, dtype=np.float64)
    st = np.asarray(sigma_to, dtype=np.float64)
    ratio2 = (st / sf) ** 2
    up = np.minimum(st, eta * st * np.sqrt(np.clip(1.0 - ratio2, 0.0, None)))
    # sigma_down^2 = st^2 - up^2 = st^2 ((1 - eta^2) + eta^2 st^2/sf^2) (0 where up is capped at
    # st): written without the cancellation of st^2 - up^2, which gives 0 for st << sf (80 -> 1e-8)
    frac = (1.0 - eta**2) + eta**2 * ratio2
    down = st * np.sqrt(np.clip(frac, 0.0, None))
    if eta <= 1.0 and np.any((down == 0) & (st > 0)):
        k = int(np.flatnonzero((down == 0) & (st > 0))[0])
        raise ValueError(f"sigmas: the ancestral step {k} from {float(sf.flat[k])!r} to "
                         f"{float(st.flat[k])!r} leaves sigma_down = sigma_to^2/sigma_from = 0 "
                         f"(underflow); use a grid whose ratios sigma_to^2/sigma_from stay "
                         f"above 1e-300, or eta < 1")
    return down, up


def churn_levels(sigma_from, gamma: float, s_tmin: float = 0.0, s_tmax: float = float("inf")):
    """Return ``(sigma_hat, lift_std)``: the raised level and the std of the noise that lifts to it.

    ``gamma`` is applied only where ``s_tmin <= sigma_from <= s_tmax`` (EDM's S_tmin/S_tmax).
    """
    gamma = check_in_range(gamma, "gamma", 0.0, None)
    sf = np.asarray(sigma_from, dtype=np.float64)
    g = np.where((sf >= s_tmin) & (sf <= s_tmax), gamma, 0.0)
    hat = sf * (1.0 + g)
    return hat, np.sqrt(hat**2 - sf**2)
