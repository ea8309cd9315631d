"""Grids shared by the theory tests (numpy float64)."""
import math

import numpy as np

from samplerlab.solvers import grids


def karras(m, smax=80.0, smin=0.05, rho=7.0):
    """The Karras grid of samplerlab.solvers.grids as a numpy array."""
    return grids.karras(m, sigma_min=smin, sigma_max=smax, rho=rho).numpy()


def random_grid(m, seed, lo=0.1, hi=20.0):
    """M+1 random levels in [lo, hi], decreasing, uniform in lambda (seeded)."""
    rng = np.random.default_rng(seed)
    return np.exp(-np.sort(rng.uniform(-math.log(hi), -math.log(lo), m + 1)))
