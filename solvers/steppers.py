"""The generic steppers: one loop per family of samplers, driven by precomputed coefficients.

Every named sampler of samplerlab is data for one of these loops (see DESIGN.md):

* :func:`run_single_step` — explicit single-step methods (exponential RK tableaux, Heun in sigma,
  the alpha-bar-chain samplers of seeds 001/002) and, through ``pre_noise``/``post_noise``, their
  stochastic (ancestral / churn) versions. Coefficients: :class:`samplerlab.theory.step_form.StepCoefficients`.
* :func:`run_multistep` — linear multistep methods ``x_{n+1} = a_n x_n + sum_j w_{n,j} F_{n-j}``
  on data (F = D) or noise (F = eps) predictions, with warm-up rows of lower order.
* :func:`run_predictor_corrector` — predictor-corrector methods whose cache holds evaluations at
  the predicted points (UniPC, the forward-value F-DPMSolver of seed 000).
* :func:`run_implicit_forward_value` — the ideal (implicit) forward-value step of seed 000, solved
  by fixed-point iteration to a tolerance; a theory-check sampler, not a fast one.

The loops run over steps and stages only; every coefficient is a Python float read from arrays
computed once per grid by theory/, so nothing on the hot path touches sympy or loops over samples.

Final step to sigma = 0: when the grid ends at 0, the last step is the denoising step
``x <- D(x, sigma_{M-1})`` (the h -> infinity limit of exponential Euler), 1 NFE, for every family.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Callable, Optional

import numpy as np
import torch

from samplerlab.theory.step_form import StepCoefficients

from .progress import Progress

__all__ = [
    "check_flag",
    "NonFiniteError",
    "run_single_step",
    "run_multistep",
    "run_predictor_corrector",
    "run_implicit_forward_value",
    "make_generator",
    "linear_step",
    "combine",
    "as_prediction",
]


def make_generator(generator, like: torch.Tensor) -> Optional[torch.Generator]:
    """Accept a ``torch.Generator``, an int seed or None (torch's global generator)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        g = torch.Generator(device=like.device)
        g.manual_seed(generator)
        return g
    raise TypeError(f"generator must be a torch.Generator, an int seed or None, got "
                    f"{type(generator).__name__}")


def _randn(like: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)


def _per_sample(coef, like: torch.Tensor):
    """A coefficient as it multiplies ``like``: a Python float or 0-d tensor unchanged, a
    ``[batch]`` tensor (one value per sample) reshaped to broadcast over the event dimensions."""
    if isinstance(coef, torch.Tensor) and coef.ndim == 1 and like.ndim > 1:
        return coef.reshape((-1,) + (1,) * (like.ndim - 1))
    return coef


def _combine(x_coef, x: torch.Tensor, weights, values) -> torch.Tensor:
    """``x_coef * x + sum_k weights[k] * values[k]`` skipping zero float weights.

    Coefficients are Python floats (the precomputed per-grid case) or tensors, 0-d or ``[batch]``
    with one value per sample (learned per-sample steps, :mod:`samplerlab.solvers.amed`).

    The result is a fresh tensor (``x * x_coef``, then the terms accumulated into it in place),
    or ``x`` itself when the combination is the identity (``x_coef == 1``, no nonzero weights).
    ``x`` and ``values`` are never modified: a tensor a sampler has handed to the denoiser or to
    a callback stays as it was (the denoiser may keep it); the fresh allocation costs a little
    speed on large states (README, "Performance").
    """
    active = [(w, v) for w, v in zip(weights, values)
              if isinstance(w, torch.Tensor) or w != 0.0]
    if not active and not isinstance(x_coef, torch.Tensor) and x_coef == 1.0:
        return x
    w0, v0 = active[0] if active else (None, None)
    if (not isinstance(x_coef, torch.Tensor) and x_coef == 1.0 and active
            and not isinstance(w0, torch.Tensor) and v0.dtype == x.dtype):
        active = active[1:]   # x + w v in one pass (no copy of x first); x's dtype is kept
        out = torch.add(x, v0, alpha=w0)
    else:
        out = x * _per_sample(x_coef, x)
    for w, v in active:
        if isinstance(w, torch.Tensor):
            out.addcmul_(_per_sample(w, v), v)
        else:
            out.add_(v, alpha=w)
    return out


combine = _combine


class NonFiniteError(FloatingPointError, ValueError):
    """A sampler met NaN or inf (denoiser output or update). A ``FloatingPointError``; also a
    ``ValueError`` so that code refusing bad values with ``except ValueError`` keeps working."""


def check_flag(value, name: str) -> bool:
    """A bool option (``progress``, ``check_finite``): ``TypeError`` naming it otherwise
    (``progress='yes'`` is not a bool)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _nonfinite(t: torch.Tensor) -> bool:
    """Whether ``t`` holds NaN or inf: one reduction (``t.sum()`` is finite iff every entry is,
    unless finite entries overflow the sum), confirmed by the elementwise test only then.
    ``.item()`` on the sum is the cheapest way to read it (one op; ~1.5 us on 2k elements on
    CPU; on CUDA it waits for the stream once per check)."""
    t = t.detach()  # no graph for the check
    return not math.isfinite(t.sum().item()) and not bool(torch.isfinite(t).all())


def _check_output(d: torch.Tensor, x: torch.Tensor, where: str, *, sigma=None,
                  x_in: Optional[torch.Tensor] = None, check_finite: bool = True) -> torch.Tensor:
    """Validate a denoiser output ``d`` for the state ``x`` (shape, dtype, device; finiteness).

    The dtype rule (every loop, also the final denoising step): an output of another float dtype
    is cast to ``x``'s dtype, so every state and the result have ``x``'s dtype (a float64
    reference model may drive a float32 state; a float32 model driving a float64 state gives
    float64 numbers of float32 accuracy — verification runs the model in float64). Another
    device is a ``TypeError``. With ``check_finite``, NaN or inf in ``d`` is a
    :class:`NonFiniteError` (a ``FloatingPointError``) naming the step, the sigma and the
    denoiser — unless the denoiser's input ``x_in`` itself was not finite (an update
    overflowed), which is reported as such.
    """
    if not isinstance(d, torch.Tensor) or d.shape != x.shape:
        shape = tuple(d.shape) if isinstance(d, torch.Tensor) else type(d).__name__
        raise ValueError(f"denoiser returned {shape} at {where}; expected a tensor of shape "
                         f"{tuple(x.shape)} like x")
    if d.device != x.device:
        raise TypeError(f"denoiser returned a tensor on {d.device} at {where}; expected x's "
                        f"device {x.device}")
    if check_finite and _nonfinite(d):
        if x_in is not None and _nonfinite(x_in):
            raise _nonfinite_error("input", where, None)
        raise _nonfinite_error("denoiser", where, sigma)
    if d.dtype != x.dtype:  # the dtype rule: states keep x's dtype
        d = d.to(x.dtype)
    return d


def _nonfinite_error(kind: str, where: str, sigma) -> "NonFiniteError":
    """The error for a non-finite model output (``kind`` 'denoiser') or for a non-finite state
    handed to the denoiser (``kind`` 'input': the update that produced it overflowed)."""
    if kind == "input":
        return NonFiniteError(f"the state passed to the denoiser at {where} holds NaN or inf: "
                              f"the update that produced it overflowed")
    at = "" if sigma is None else f" (sigma = {_sigma_text(sigma)})"
    return NonFiniteError(f"denoiser returned NaN or inf at {where}{at}; samplerlab never passes "
                          f"a non-finite model output on (check_finite=False skips this check)")


def _sigma_text(sigma) -> str:
    """A noise level for a message: a number, or the range of a per-sample ``[batch]`` tensor."""
    if isinstance(sigma, torch.Tensor):
        sigma = sigma.detach()
    if isinstance(sigma, torch.Tensor) and sigma.numel() != 1:
        if sigma.numel() == 0:
            return "[]"
        return f"{float(sigma.min()):.6g} .. {float(sigma.max()):.6g} per sample"
    return f"{float(sigma):.6g}"


def _coef_text(x_coef, weights) -> str:
    def fmt(v):
        return f"{float(v):.6g}" if not isinstance(v, torch.Tensor) or v.numel() == 1 else \
            f"tensor(max |.| {float(v.abs().max()):.6g})"
    return f"x coefficient {fmt(x_coef)}, weights [{', '.join(fmt(w) for w in weights)}]"


def _check_update(x_new: torch.Tensor, where: str, x_coef, weights,
                  check_finite: bool, sources=()) -> torch.Tensor:
    """:class:`NonFiniteError` if an update is not finite, naming its cause.

    ``sources``: ``(kind, label, sigma, tensor)`` of the values the update used that were not
    checked on their own (``kind`` 'denoiser': a model output, e.g. the last stage's or the
    multistep history's — an output that only feeds the update is checked through it, one
    reduction instead of two; 'input': a state handed to the denoiser). Scanned only on failure:
    a non-finite source is reported as the denoiser's (or the overflowed input's) fault,
    otherwise the update itself overflowed the dtype and its coefficients are named."""
    if check_finite and _nonfinite(x_new):
        for kind, label, sigma, value in sources:
            if _nonfinite(value):
                raise _nonfinite_error(kind, label, sigma)
        raise NonFiniteError(f"the update at {where} is not finite (overflow of "
                                 f"{x_new.dtype}); its coefficients: {_coef_text(x_coef, weights)}")
    return x_new


def _final_denoise(denoiser, x, sigma_last, callback, index, check_finite: bool = True):
    d = _check_output(denoiser(x, sigma_last), x, "the final step to sigma = 0",
                      sigma=sigma_last, check_finite=check_finite)
    if callback is not None:
        callback({"x": d, "i": index, "sigma": sigma_last, "sigma_next": sigma_last * 0,
                  "denoised": d})
    return d


def _report(callback, bar, n, x, sigmas, denoised, **extra):
    """Tell the callback about step n (k-diffusion's info dict) and advance the progress bar.

    The callback gets the sampler's own state tensor, as in k-diffusion: it may keep it (the
    sampler never changes it afterwards) but must not modify it in place."""
    if callback is not None:  # x is never modified afterwards: no copy needed
        callback({"x": x, "i": n, "sigma": sigmas[n], "sigma_next": sigmas[n + 1],
                  "denoised": denoised, **extra})
    bar.update()


def _step_sigmas(sigmas: torch.Tensor):
    """(sigma tensor per grid point, number of steps with sigma_{n+1} > 0, ends at zero?)."""
    ends_zero = bool(sigmas[-1] == 0)
    return ends_zero, sigmas.numel() - 1 - int(ends_zero)


def _check_representable(dtype: torch.dtype, **arrays) -> None:
    """``ValueError`` naming the grid if a coefficient (or stage noise level) overflows x's dtype
    (float16 stops at 65504: a look-back level or a weight of a huge step may not fit)."""
    big = torch.finfo(dtype).max
    for name, arr in arrays.items():
        a = np.abs(np.asarray(arr, dtype=np.float64))
        if a.size and not a.max() < big:
            n = int(np.unravel_index(np.argmax(a), a.shape)[0])
            raise ValueError(f"sigmas: the coefficients of step {n} ({name} up to "
                             f"{a.max():.3g}) overflow x's dtype {dtype} (max {big:.3g}); use a "
                             f"wider dtype or a finer grid")


def _step_lists(coeffs: StepCoefficients):
    """The coefficients of a :class:`StepCoefficients` as nested Python float lists."""
    return (coeffs.stage_x.tolist(), coeffs.stage_w.tolist(), coeffs.out_x.tolist(),
            coeffs.out_w.tolist())


def linear_step(denoiser, x, stage_sigma, stage_x, stage_w, out_x, out_w, *, d0=None,
                where: str = "step", check_finite: bool = True):
    """One explicit step of the linear-step form (DESIGN.md); returns ``(x_next, stage outputs)``::

        X_j = stage_x[j] x + sum_{k<j} stage_w[j][k] D_k,   D_j = D(X_j, stage_sigma[j])
        x_next = out_x x + sum_k out_w[k] D_k

    Every coefficient is a Python float, a 0-d tensor or a ``[batch]`` tensor (one value per
    sample), so a step whose intermediate point and scale differ per sample (AMED, seed 004)
    runs through the same code as the precomputed samplers. ``d0``, when given, is the first
    stage's output (already evaluated by the caller, or a proxy such as AMED's analytical first
    step). ``where`` names the step in error messages; ``check_finite``: a non-finite stage
    output or update raises ``FloatingPointError`` (:func:`_check_output`). Nothing passed in is
    modified.
    """
    ds = [] if d0 is None else [d0]
    last = len(stage_x) - 1
    sources = ()
    for j in range(len(ds), len(stage_x)):
        xj = _combine(stage_x[j], x, stage_w[j][:j], ds)
        # the last stage's output feeds only the update: checked through it (one reduction)
        ds.append(_check_output(denoiser(xj, stage_sigma[j]), x, f"{where}, stage {j}",
                                sigma=stage_sigma[j], x_in=xj,
                                check_finite=check_finite and j < last))
        if j == last:
            sources = (("input", f"{where}, stage {j}", None, xj),
                       ("denoiser", f"{where}, stage {j}", stage_sigma[j], ds[-1]))
    return _check_update(_combine(out_x, x, out_w, ds), where, out_x, out_w, check_finite,
                         sources), ds


def _linear_step(denoiser, x, lists, n, stage_sigma, d0=None, check_finite=True):
    """Step n of an explicit linear method from per-grid coefficient lists (:func:`linear_step`)."""
    stage_x, stage_w, out_x, out_w = lists
    return linear_step(denoiser, x, stage_sigma[n], stage_x[n], stage_w[n], out_x[n], out_w[n],
                       d0=d0, where=f"step {n}", check_finite=check_finite)


def run_single_step(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor,
                    coeffs: StepCoefficients, *, generator=None, callback=None,
                    progress: bool = False, check_finite: bool = True) -> torch.Tensor:
    """Run an explicit single-step method given its per-step coefficients.

    ``coeffs`` covers the steps with ``sigma_{n+1} > 0`` (M, or M-1 if the grid ends at 0)::

        x'    = x_n + pre_noise[n] z            X_j = stage_x[n,j] x' + sum_{k<j} stage_w[n,j,k] D_k
        D_j   = D(X_j, stage_sigma[n,j])        x_{n+1} = out_x[n] x' + sum_k out_w[n,k] D_k + post_noise[n] z'

    ``check_finite`` (every loop, default True): a non-finite denoiser output raises
    ``FloatingPointError`` naming the step, the sigma and the denoiser; a non-finite update
    (overflow) names the step and its coefficients. Off, nothing is checked (README,
    "Reliability": the guard's measured cost).
    """
    check_flag(progress, "progress"), check_flag(check_finite, "check_finite")
    ends_zero, m = _step_sigmas(sigmas)
    if coeffs.steps != m:
        raise ValueError(f"coefficients cover {coeffs.steps} steps but the grid has {m} positive steps")
    _check_representable(x.dtype, stage_sigma=coeffs.stage_sigma, stage_x=coeffs.stage_x,
                         stage_w=coeffs.stage_w, out_x=coeffs.out_x, out_w=coeffs.out_w,
                         noise=np.concatenate([coeffs.pre_noise, coeffs.post_noise]))
    stage_sigma = torch.as_tensor(coeffs.stage_sigma, dtype=x.dtype, device=x.device)
    lists = _step_lists(coeffs)
    pre = coeffs.pre_noise.tolist()
    post = coeffs.post_noise.tolist()
    with Progress(sigmas.numel() - 1, "sampling", enabled=progress) as bar:
        for n in range(m):
            if pre[n] != 0.0:
                x = x.add(_randn(x, generator), alpha=pre[n])
            x, ds = _linear_step(denoiser, x, lists, n, stage_sigma, check_finite=check_finite)
            if post[n] != 0.0:
                x = x.add(_randn(x, generator), alpha=post[n])
            _report(callback, bar, n, x, sigmas, ds[0])
        if ends_zero:
            x = _final_denoise(denoiser, x, sigmas[m], callback, m, check_finite)
            bar.update()
    return x


def _as_prediction(kind: str, x_eval: torch.Tensor, d: torch.Tensor, sigma) -> torch.Tensor:
    """The model output in prediction form ``kind``: ``'data'`` D, ``'noise'`` (x - D)/sigma
    (``sigma`` a number, a 0-d tensor or a ``[batch]`` tensor)."""
    if kind == "data":
        return d
    if kind == "noise":
        return torch.sub(x_eval, d).div_(_per_sample(sigma, x_eval))  # one fresh tensor
    raise ValueError(f"prediction must be 'data' or 'noise', got {kind!r}")


as_prediction = _as_prediction


def run_multistep(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, coeffs, *,
                  starter: Optional[StepCoefficients] = None, callback=None,
                  progress: bool = False, check_finite: bool = True) -> torch.Tensor:
    """Run a linear multistep method ``x_{n+1} = out_x[n] x_n + sum_j weights[n, j] F_{n-j}``.

    ``F_m`` is the model output at grid point m in the prediction ``coeffs.prediction`` ('data':
    ``D(x_m, sigma_m)``; 'noise': ``(x_m - D)/sigma_m``). One NFE per step.

    ``starter`` (optional) replaces the first ``starter.steps`` steps by an explicit single-step
    method whose first stage is the evaluation at the grid point (``stage_x[:, 0] == 1``,
    ``stage_sigma[:, 0] == sigma_n``), so its evaluations fill the history at no extra cost and the
    warm-up keeps the method's order (``s`` NFE per starting step instead of 1).
    ``check_finite``: as :func:`run_single_step`.
    """
    check_flag(progress, "progress"), check_flag(check_finite, "check_finite")
    ends_zero, m = _step_sigmas(sigmas)
    if coeffs.out_x.shape[0] != m:
        raise ValueError(f"coefficients cover {coeffs.out_x.shape[0]} steps but the grid has {m}")
    _check_representable(x.dtype, out_x=coeffs.out_x, weights=coeffs.weights)
    out_x = coeffs.out_x.tolist()
    weights = coeffs.weights.tolist()
    history = deque(maxlen=coeffs.weights.shape[1])
    n_start = 0 if starter is None else min(starter.steps, m)
    if starter is not None:
        if not (np.allclose(starter.stage_x[:, 0], 1.0, rtol=0, atol=1e-15) and np.allclose(
                starter.stage_sigma[:n_start, 0], sigmas[:n_start].cpu().double().numpy(),
                rtol=1e-14, atol=0)):
            raise ValueError("starter's first stage must be the evaluation at the grid point")
        start_sigma = torch.as_tensor(starter.stage_sigma, dtype=x.dtype, device=x.device)
        start_lists = _step_lists(starter)
    with Progress(sigmas.numel() - 1, "sampling", enabled=progress) as bar:
        for n in range(m):
            # checked on its own only where it feeds a further model call (a starter's stages);
            # otherwise through the update, where the newest value always has a nonzero weight
            # (one reduction; every older history value entered an update that was checked)
            d = _check_output(denoiser(x, sigmas[n]), x, f"step {n}", sigma=sigmas[n],
                              check_finite=check_finite and n < n_start)
            history.appendleft(_as_prediction(coeffs.prediction, x, d, sigmas[n]))
            if n < n_start:
                x, _ = _linear_step(denoiser, x, start_lists, n, start_sigma, d0=d,
                                    check_finite=check_finite)
            else:
                w = weights[n][:len(history)]
                x = _check_update(_combine(out_x[n], x, w, history), f"step {n}", out_x[n], w,
                                  check_finite, [("denoiser", f"step {n}", sigmas[n], d)])
            _report(callback, bar, n, x, sigmas, d)
        if ends_zero:
            x = _final_denoise(denoiser, x, sigmas[m], callback, m, check_finite)
            bar.update()
    return x


class _Evaluation:
    """One cached model evaluation ``D(x_eval, sigma)`` of a predictor-corrector method, with
    its data/noise predictions computed once (a method may read both, at every later step)."""

    __slots__ = ("x_eval", "sigma", "_pred")

    def __init__(self, x_eval: torch.Tensor, d: torch.Tensor, sigma):
        self.x_eval, self.sigma, self._pred = x_eval, sigma, {"data": d}

    def prediction(self, kind: str) -> torch.Tensor:
        if kind not in self._pred:
            self._pred[kind] = _as_prediction(kind, self.x_eval, self._pred["data"], self.sigma)
        return self._pred[kind]


def run_predictor_corrector(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, coeffs, *,
                            callback=None, progress: bool = False,
                            check_finite: bool = True) -> torch.Tensor:
    """Run a predictor-corrector method whose cache holds evaluations at the predicted points.

    Step n (``sigma_n -> sigma_{n+1}``)::

        xhat      = pred_out_x[n] x_n + sum_j pred_w[n, j] P_{n-j}            (no NFE)
        (xhat, D) evaluated once:  D_new = D(xhat, sigma_{n+1})               (1 NFE)
        x_{n+1}   = corr_out_x[n] x_n + sum_j corr_w[n, j] C_{n-j} + corr_new[n] C_new

    P and C are the cached evaluations in the predictor's and the corrector's prediction type
    (data or noise, computed from the evaluation point and D). The evaluation is skipped at the
    last step when the corrector does not use it (``corr_new == 0``): then ``x_{n+1} = xhat``
    (UniPC's last step). The cache starts with an evaluation at ``x_0`` (``coeffs.initial ==
    'evaluate'``, 1 NFE) or with the start noise as a proxy (``'noise_proxy'``: D = 0 at sigma_0,
    i.e. eps = x_0/sigma_0, no NFE; F-DPMSolver, seed 000). ``check_finite``: as
    :func:`run_single_step` (the predicted point is checked as the denoiser's input).
    """
    check_flag(progress, "progress"), check_flag(check_finite, "check_finite")
    ends_zero, m = _step_sigmas(sigmas)
    if coeffs.pred_out_x.shape[0] != m:
        raise ValueError(f"coefficients cover {coeffs.pred_out_x.shape[0]} steps but the grid has {m}")
    _check_representable(x.dtype, pred_out_x=coeffs.pred_out_x, pred_w=coeffs.pred_w,
                         corr_out_x=coeffs.corr_out_x, corr_w=coeffs.corr_w,
                         corr_new=coeffs.corr_new)
    p_out, p_w = coeffs.pred_out_x.tolist(), coeffs.pred_w.tolist()
    c_out, c_w, c_new = coeffs.corr_out_x.tolist(), coeffs.corr_w.tolist(), coeffs.corr_new.tolist()
    depth = max(coeffs.pred_w.shape[1], coeffs.corr_w.shape[1])
    cache = deque(maxlen=depth)  # _Evaluation entries, newest first
    initial = getattr(coeffs, "initial", "evaluate")
    if initial == "evaluate":
        cache.appendleft(_Evaluation(x, _check_output(
            denoiser(x, sigmas[0]), x, "the initial evaluation", sigma=sigmas[0],
            check_finite=check_finite), sigmas[0]))
    elif initial == "noise_proxy":
        cache.appendleft(_Evaluation(x, torch.zeros_like(x), sigmas[0]))
    else:
        raise ValueError(f"coeffs.initial must be 'evaluate' or 'noise_proxy', got {initial!r}")

    def column(kind):
        return [entry.prediction(kind) for entry in cache]

    with Progress(sigmas.numel() - 1, "sampling", enabled=progress) as bar:
        for n in range(m):
            xhat = _combine(p_out[n], x, p_w[n][:len(cache)], column(coeffs.pred_prediction))
            needs_eval = c_new[n] != 0.0 or n < m - 1
            if needs_eval:
                # checked through the corrector update (corr_new != 0 wherever it is evaluated
                # except before the last step, whose update then uses it through the cache)
                d_new = _check_output(denoiser(xhat, sigmas[n + 1]), x, f"step {n}",
                                      sigma=sigmas[n + 1], x_in=xhat,
                                      check_finite=check_finite and c_new[n] == 0.0)
                new = _Evaluation(xhat, d_new, sigmas[n + 1])
                w = c_w[n][:len(cache)] + [c_new[n]]
                x = _check_update(_combine(c_out[n], x, w, column(coeffs.corr_prediction)
                                           + [new.prediction(coeffs.corr_prediction)]),
                                  f"step {n} (corrector)", c_out[n], w, check_finite,
                                  [("input", f"step {n}", None, xhat),
                                   ("denoiser", f"step {n}", sigmas[n + 1], d_new)])
                cache.appendleft(new)
            else:
                d_new = None
                x = _check_update(xhat, f"step {n} (predictor)", p_out[n],
                                  p_w[n][:len(cache)], check_finite)
            _report(callback, bar, n, x, sigmas, d_new, x_pred=xhat)
        if ends_zero:
            x = _final_denoise(denoiser, x, sigmas[m], callback, m, check_finite)
            bar.update()
    return x


def run_implicit_forward_value(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor,
                               coeffs: StepCoefficients, *, tol: float = 1e-12,
                               max_iter: int = 5000, callback=None,
                               progress: bool = False, check_finite: bool = True) -> torch.Tensor:
    """The ideal forward-value sampler of seed 000 (implicit; for theory checks).

    Solves ``x_{n+1} = out_x[n] x_n + out_w[n] D(x_{n+1}, sigma_{n+1})`` — the data-form
    right-endpoint rule, with exponential Euler's weights (``coeffs`` is the one-stage ``euler``
    tableau) — by fixed-point iteration from the DDIM predictor, to
    ``max|x^{k+1} - x^k| <= tol * (1 + max|x^k|)``. Raises ``RuntimeError`` if it does not
    converge within ``max_iter`` iterations (the map contracts when ``out_w * |dD/dx| < 1``).
    ``check_finite``: as :func:`run_single_step` (every iterate's model output is checked).
    """
    check_flag(progress, "progress"), check_flag(check_finite, "check_finite")
    ends_zero, m = _step_sigmas(sigmas)
    if coeffs.stages != 1 or coeffs.steps != m:
        raise ValueError("the forward-value step needs one-stage (euler) coefficients for every step")
    out_x = coeffs.out_x.tolist()
    out_w = coeffs.out_w[:, 0].tolist()
    tol = max(float(tol), 8 * torch.finfo(x.dtype).eps)  # no tighter than the dtype resolves
    with Progress(sigmas.numel() - 1, "sampling", enabled=progress) as bar:
        for n in range(m):
            d = _check_output(denoiser(x, sigmas[n]), x, f"step {n}", sigma=sigmas[n],
                              check_finite=check_finite)
            base = x * out_x[n]
            y = base.add(d, alpha=out_w[n])  # DDIM predictor
            for it in range(max_iter if y.numel() else 0):  # an empty batch: nothing to solve
                d = _check_output(denoiser(y, sigmas[n + 1]), x, f"step {n}, iteration {it}",
                                  sigma=sigmas[n + 1], x_in=y, check_finite=check_finite)
                y_new = base.add(d, alpha=out_w[n])
                delta = (y_new - y).abs().max()
                y = y_new
                if delta <= tol * (1.0 + y.abs().max()):
                    break
            else:
                if y.numel() == 0:
                    x = y
                    _report(callback, bar, n, x, sigmas, d)
                    continue
                raise RuntimeError(f"forward-value fixed point did not converge at step {n} "
                                   f"within max_iter={max_iter} (last change {float(delta):.3e})")
            x = y
            _report(callback, bar, n, x, sigmas, d)
        if ends_zero:
            x = _final_denoise(denoiser, x, sigmas[m], callback, m, check_finite)
            bar.update()
    return x
