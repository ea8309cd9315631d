"""Sample-based TV fall-backs in 1-D and 2-D: histograms and binned KDE (biased; for rough cross-checks).

Part of :mod:`samplerlab.experiments.metrics` (see its docstring for the interfaces).
"""
from __future__ import annotations

import builtins
import math
import numbers
import torch
from samplerlab.theory.validation import check_in_range, check_positive_int

from .density_1d import _gauss_legendre
from .pushforward import _call_log_prob, _check_points

__all__ = ['tv_histogram', 'tv_kde']


def _as_samples(x, name):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of samples [n] or [n, d], got "
                        f"{type(x).__name__}")
    if x.ndim == 1:
        x = x[:, None]
    _check_points(x, name)
    if x.shape[1] not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D samples ([n], [n, 1] or [n, 2]), got "
                         f"{tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"{name} must hold at least 2 samples")
    return x


def _resolve_q(q, d, like):
    if isinstance(q, torch.Tensor):
        qs = _as_samples(q, "q")
        if qs.shape[1] != d:
            raise ValueError(f"q samples must have dimension {d}, got {qs.shape[1]}")
        if qs.dtype != like.dtype or qs.device != like.device:
            raise TypeError("q samples must share dtype and device with samples_p")
        return qs, None
    if callable(q):
        return None, q
    raise TypeError("q must be a tensor of samples or a log-density callable y[n, d] -> [n]")


def _resolve_range(range_, samples, d, pad):
    if range_ is None:
        allx = torch.cat([s for s in samples if s is not None])
        lo, hi = allx.min(dim=0).values, allx.max(dim=0).values
        span = torch.clamp(hi - lo, min=1e-12)
        return [(float(lo[k] - pad * span[k]), float(hi[k] + pad * span[k])) for k in range(d)]
    rng = [range_] if d == 1 and len(range_) == 2 and isinstance(range_[0], numbers.Real) \
        else list(range_)
    if len(rng) != d:
        raise ValueError(f"range must give (low, high) for each of the {d} dimension(s)")
    out = []
    for lo, hi in rng:
        lo, hi = check_in_range(lo, "range"), check_in_range(hi, "range")
        if not hi > lo:
            raise ValueError(f"range must have high > low, got ({lo}, {hi})")
        out.append((lo, hi))
    return out


def _bin_probs(x, edges_lo, widths, bins, d):
    idx = torch.floor((x - edges_lo) / widths).long()
    inside = ((idx >= 0) & (idx < bins)).all(dim=1)
    idx = idx[inside]
    flat = idx[:, 0] if d == 1 else idx[:, 0] * bins + idx[:, 1]
    counts = torch.bincount(flat, minlength=bins ** d).to(x.dtype)
    return counts / x.shape[0]


def _cell_quadrature(log_prob, lows, widths, bins, d, order, like):
    """Probabilities of the grid cells under exp(log_prob) (tensor-product Gauss-Legendre)."""
    t, w = _gauss_legendre(order, like)
    axes = []
    for k in range(d):
        left = lows[k] + widths[k] * torch.arange(bins, dtype=like.dtype, device=like.device)
        nodes = left[:, None] + 0.5 * widths[k] * (t[None, :] + 1.0)  # [bins, order]
        axes.append((nodes, 0.5 * widths[k] * w))
    if d == 1:
        nodes, wt = axes[0]
        dens = torch.exp(_call_log_prob(log_prob, nodes.reshape(-1, 1), "q"))
        return (dens.reshape(bins, order) * wt).sum(1)
    (n0, w0), (n1, w1) = axes
    g0 = n0.reshape(bins, 1, order, 1).expand(bins, bins, order, order)
    g1 = n1.reshape(1, bins, 1, order).expand(bins, bins, order, order)
    pts = torch.stack([g0.reshape(-1), g1.reshape(-1)], dim=1)
    dens = torch.exp(_call_log_prob(log_prob, pts, "q")).reshape(bins, bins, order, order)
    return (dens * w0[None, None, :, None] * w1[None, None, None, :]).sum((2, 3)).reshape(-1)


def tv_histogram(samples_p: torch.Tensor, q, *, bins: int = 50, range=None,
                 quad_order: int = 4) -> float:
    """Histogram TV between samples of p and q (samples or a log-density callable), 1-D or 2-D.

    ``TV_hist = 1/2 sum_b |P_b - Q_b| + 1/2 (P_out + Q_out)`` over ``bins`` (per dimension) equal
    cells on ``range`` (default: the samples' span padded by 5 %), where ``P_b`` are empirical
    cell frequencies, ``Q_b`` too when ``q`` is a sample tensor, or the cell probabilities by
    Gauss-Legendre quadrature (``quad_order`` per dimension and cell) when ``q`` is a log-density
    callable; ``*_out`` is the mass outside the range. Biases: binning lowers TV (it coarse-grains
    both laws); sampling noise raises it by about ``1/2 sum_b E|P_b - E P_b| ~ sqrt(B / (2 pi n))``
    for B occupied cells. A rough cross-check, not a convergence metric.
    """
    p = _as_samples(samples_p, "samples_p")
    d = p.shape[1]
    q_samples, q_logp = _resolve_q(q, d, p)
    bins = check_positive_int(bins, "bins")
    quad_order = check_positive_int(quad_order, "quad_order")
    rng = _resolve_range(range, [p, q_samples], d, 0.05)
    lows = torch.tensor([r[0] for r in rng], dtype=p.dtype, device=p.device)
    widths = torch.tensor([(r[1] - r[0]) / bins for r in rng], dtype=p.dtype, device=p.device)
    pb = _bin_probs(p, lows, widths, bins, d)
    if q_samples is not None:
        qb = _bin_probs(q_samples, lows, widths, bins, d)
    else:
        qb = _cell_quadrature(q_logp, lows, widths, bins, d, quad_order, p)
    p_out = max(0.0, 1.0 - float(pb.sum()))
    q_out = max(0.0, 1.0 - float(qb.sum()))
    return min(1.0, 0.5 * float((pb - qb).abs().sum()) + 0.5 * (p_out + q_out))


def _linear_binning(x, lows, spacing, size):
    """Counts of samples spread on the grid nodes with linear (cloud-in-cell) weights, / n."""
    n, d = x.shape
    u = (x - lows) / spacing
    base = torch.floor(u).long()
    frac = u - base
    counts = torch.zeros(size ** d, dtype=x.dtype, device=x.device)
    for corner in range(2 ** d):
        offs = [(corner >> k) & 1 for k in range(d)]
        idx = base + torch.tensor(offs, device=x.device)
        wgt = torch.ones(n, dtype=x.dtype, device=x.device)
        for k in range(d):
            wgt = wgt * (frac[:, k] if offs[k] else 1.0 - frac[:, k])
        inside = ((idx >= 0) & (idx < size)).all(dim=1)
        idx = idx.clamp(0, size - 1)
        flat = idx[:, 0] if d == 1 else idx[:, 0] * size + idx[:, 1]
        counts.index_add_(0, flat, torch.where(inside, wgt, torch.zeros_like(wgt)))
    return counts.reshape((size,) * d) / n


def _binned_kde(x, lows, spacing, size, bandwidth):
    """Gaussian product-kernel KDE of ``x`` [n, d] on the uniform grid (linear binning, then a
    separable discrete convolution with the kernel sampled on the grid out to 5 bandwidths)."""
    d = x.shape[1]
    dens = _linear_binning(x, lows, spacing, size)
    for k in range(d):
        half = int(math.ceil(5.0 * float(bandwidth[k]) / float(spacing[k])))
        offs = torch.arange(-half, half + 1, dtype=x.dtype, device=x.device) * spacing[k]
        kern = torch.exp(-0.5 * (offs / bandwidth[k]) ** 2) / (math.sqrt(2 * math.pi) * bandwidth[k])
        moved = dens.movedim(k, -1)
        shape = moved.shape
        flat = moved.reshape(-1, 1, size)
        conv = torch.nn.functional.conv1d(flat, kern.flip(0).reshape(1, 1, -1), padding=half)
        dens = conv.reshape(shape).movedim(-1, k)
    return dens.reshape(-1)


def tv_kde(samples_p: torch.Tensor, q, *, bandwidth=None, grid_size: int | None = None,
           range=None) -> float:
    """KDE TV between samples of p and q (samples or a log-density callable), 1-D or 2-D.

    ``p`` (and ``q`` when given as samples) are replaced by Gaussian kernel density estimates with
    per-dimension bandwidth ``h_k = sigma_k n^(-1/(d+4))`` (Scott's rule) unless ``bandwidth`` is
    given, evaluated on a uniform ``grid_size``^d grid over ``range`` (default: the samples' span
    padded by 3 bandwidths; ``grid_size`` 1024 in 1-D, 128 in 2-D), and
    ``TV ~= 1/2 sum |p_hat - q| dA`` plus half of the mass each density leaves outside the grid.
    The KDE is computed by linear binning of the samples onto the grid and a separable discrete
    Gaussian convolution (kernel cut at 5 bandwidths): cost O(n + grid_size^d * bandwidth/spacing).
    Smoothing biases TV (it blurs both laws; against an exact q it *raises* TV by the KDE bias
    O(h^2)); noise raises it too; the grid spacing should be well below the bandwidth. A rough
    cross-check only.
    """
    p = _as_samples(samples_p, "samples_p")
    d = p.shape[1]
    q_samples, q_logp = _resolve_q(q, d, p)
    if grid_size is None:
        grid_size = 1024 if d == 1 else 128
    grid_size = check_positive_int(grid_size, "grid_size", minimum=8)

    def scott(x):
        return x.std(dim=0, unbiased=True) * x.shape[0] ** (-1.0 / (d + 4))

    if bandwidth is None:
        bw_p = scott(p)
        bw_q = scott(q_samples) if q_samples is not None else None
    else:
        bw = torch.as_tensor(bandwidth, dtype=p.dtype, device=p.device).reshape(-1)
        if bw.numel() == 1:
            bw = bw.expand(d)
        if bw.numel() != d or not torch.isfinite(bw).all() or (bw <= 0).any():
            raise ValueError(f"bandwidth must be a positive number or {d} positive numbers")
        bw_p = bw_q = bw
    if (bw_p <= 0).any():
        raise ValueError("samples_p are degenerate (zero spread); cannot choose a bandwidth")
    if bw_q is not None and (bw_q <= 0).any():
        raise ValueError("q's samples are degenerate (zero spread); cannot choose a bandwidth "
                         "(give bandwidth=...)")
    pad_bw = bw_p if bw_q is None else torch.maximum(bw_p, bw_q)
    if range is None:
        allx = torch.cat([s for s in (p, q_samples) if s is not None])
        lo = allx.min(dim=0).values - 3 * pad_bw
        hi = allx.max(dim=0).values + 3 * pad_bw
        rng = [(float(lo[k]), float(hi[k])) for k in builtins.range(d)]
    else:
        rng = _resolve_range(range, [p], d, 0.0)
    axes = [torch.linspace(a, b, grid_size, dtype=p.dtype, device=p.device) for a, b in rng]
    lows = torch.tensor([a for a, _ in rng], dtype=p.dtype, device=p.device)
    spacing = torch.tensor([(b - a) / (grid_size - 1) for a, b in rng], dtype=p.dtype,
                           device=p.device)
    cell = float(torch.prod(spacing))
    if d == 1:
        pts = axes[0][:, None]
    else:
        g0, g1 = torch.meshgrid(axes[0], axes[1], indexing="ij")
        pts = torch.stack([g0.reshape(-1), g1.reshape(-1)], dim=1)
    p_hat = _binned_kde(p, lows, spacing, grid_size, bw_p)
    if q_samples is not None:
        q_val = _binned_kde(q_samples, lows, spacing, grid_size, bw_q)
    else:
        q_val = torch.exp(_call_log_prob(q_logp, pts, "q"))
    p_out = max(0.0, 1.0 - float(p_hat.sum()) * cell)
    q_out = max(0.0, 1.0 - float(q_val.sum()) * cell)
    tv = 0.5 * float((p_hat - q_val).abs().sum()) * cell + 0.5 * (p_out + q_out)
    if not math.isfinite(tv):  # never hidden by the clamp to 1 (min(1, nan) is 1)
        raise FloatingPointError("tv_kde: the density estimates are not finite (q's log-density "
                                 "or the samples overflow)")
    return min(1.0, tv)
