"""Printable weight sets for ``samplerlab theory show``: multistep, UniPC and alpha-bar chains.

Each entry shows the symbolic weights of one row (``q`` past values, variable steps) and their
consistency: the residual of applying the weights to each monomial ``tau^j`` against the exact
integral of the method's kernel, for ``j = 0 .. q`` — zero up to the degree the weights integrate
exactly, and the printed nonzero remainder at the first degree they do not.

Kernels (see :mod:`samplerlab.theory.multistep`):

* data-form exponential Adams in lambda (``res``, ``dpmpp``, UniPC): the weight of the value at
  node ``s_i h`` (``s_0 = 0``) must integrate ``int_0^h e^{-(h - tau)} tau^j dtau =
  j! h^{j+1} phi_{j+1}(-h)``;
* polynomial Adams in sigma (``lms``, ``ipndm``): node ``s_i * step``, ``int_0^step u^j du``.
"""
from __future__ import annotations

import sympy as sp

from .cli import register_entry
from .multistep import multistep_weights_sym
from .phi_functions import Phi
from .predictor_corrector import unipc_weights_sym
from .alpha_bar_chain import chain_derivation

__all__ = ["consistency_residuals"]


def _exact_moment(kind: str, j: int, step):
    if kind == "exp_data":
        return sp.factorial(j) * step ** (j + 1) * Phi(j + 1, -step)
    return step ** (j + 1) / (j + 1)


def consistency_residuals(weights, nodes, step, kind: str, max_degree: int):
    """``[(j, residual_j)]``: ``sum_i w_i (s_i step)^j - exact moment j`` for ``j <= max_degree``."""
    out = []
    for j in range(max_degree + 1):
        approx = sum(w * (s * step) ** j for w, s in zip(weights, nodes))
        residual = sp.simplify(sp.expand(approx - _exact_moment(kind, j, step)))
        out.append((j, residual))
    return out


def _render(title, symbols, weights, residuals, latex):
    fmt = sp.latex if latex else str
    lines = [title, "symbols: " + ", ".join(f"{k}" for k in symbols)]
    for i, w in enumerate(weights):
        lines.append(f"  w_{i} = {fmt(w)}")
    if residuals:
        lines.append("consistency (weights applied to tau^j minus the exact kernel integral):")
        for j, r in residuals:
            status = "exact" if r == 0 else f"residual {fmt(r)}"
            lines.append(f"  degree {j}: {status}")
    return "\n".join(lines)


def _multistep_entry(method: str, q: int, kind: str, note: str):
    def build(**params):
        if params:
            raise ValueError(f"{method} (q={q}) takes no parameters, got {sorted(params)}")
        symbols, weights = multistep_weights_sym(method, q)
        residuals = []
        if kind is not None:
            step = symbols["h"] if kind == "exp_data" else symbols["step"]
            if method == "ipndm":
                nodes = [-j for j in range(q)]
            else:
                nodes = [0] + [symbols[f"s{j}"] for j in range(1, q)]
            residuals = consistency_residuals(weights, nodes, step, kind, q)
        return (f"{method}, {q} past values — {note}", symbols, weights, residuals)

    def render(obj, latex, order):
        return _render(*obj, latex)

    return build, render


_ENTRIES = {
    "dpmpp_2m": ("dpmpp", 2, "exp_data", "DPM-Solver++(2M) as in the paper (phi_1 only)"),
    "dpmpp_3m": ("dpmpp", 3, "exp_data", "DPM-Solver++(3M) as in the reference code"),
    "res_2m": ("res", 2, "exp_data", "RES multistep, exact exponential Adams"),
    "res_3m": ("res", 3, "exp_data", "exact third-order exponential Adams"),
    "deis_3": ("deis", 3, None, "DEIS, noise prediction, Lagrange in lambda (weights scaled "
                                "by -sigma_next)"),
    "lms_4": ("lms", 4, "poly", "linear multistep in sigma, exact Lagrange weights"),
    "ipndm_4": ("ipndm", 4, "poly", "iPNDM fixed-step Adams-Bashforth-4 weights"),
    "li_accel_ode_1nfe": ("li_accel_ode_1nfe", 2, None,
                          "seed 002, 1-NFE accelerated ODE sampler (arcsin closed form)"),
}

for _name, (_method, _q, _kind, _note) in _ENTRIES.items():
    _build, _render_fn = _multistep_entry(_method, _q, _kind, _note)
    register_entry(_name, f"{_note} [weight set]", _build, _render_fn)


def _unipc_entry(p: int, variant: str, part: str):
    def build(**params):
        if params:
            raise ValueError(f"unipc takes no parameters here, got {sorted(params)}")
        h, nodes, weights = unipc_weights_sym(p, variant, part)
        title = f"UniPC {part}, p = {p}, {variant} (data prediction)"
        return (title, {"h": h, **{f"r{i + 1}": r for i, r in enumerate(nodes)}}, weights, [])

    def render(obj, latex, order):
        return _render(*obj, latex)

    return build, render


for _p in (1, 2, 3):
    for _variant in ("bh1", "bh2"):
        for _part in ("predictor", "corrector"):
            _b, _r = _unipc_entry(_p, _variant, _part)
            register_entry(f"unipc_{_part}_{_p}_{_variant}",
                           f"UniPC {_part} of order {_p + (_part == 'corrector')}, {_variant} "
                           "[weight set]", _b, _r)


def _chain_entry(name: str):
    def build(**params):
        if params:
            raise ValueError(f"{name} takes no parameters, got {sorted(params)}")
        return chain_derivation(name)

    def render(obj, latex, order):
        fmt = sp.latex if latex else str
        lines = [f"{name}: the alpha-bar chain update in VE variables (x = Y / sqrt(abar)), "
                 "D_k = denoiser outputs of the stages"]
        for k, (s, inp) in enumerate(zip(obj.stage_sigma, obj.stage_input)):
            lines.append(f"  stage {k}: sigma = {fmt(s)}, input = {fmt(sp.simplify(inp))}")
        lines.append(f"  output = {fmt(sp.simplify(obj.output))}")
        if obj.pre_noise != 0:
            lines.append(f"  pre-noise std = {fmt(obj.pre_noise)}")
        return "\n".join(lines)

    return build, render


for _name in ("li_ddim", "li_ddpm", "li_accel_ode", "li_accel_sde"):
    _b, _r = _chain_entry(_name)
    register_entry(_name, f"seed 002 {_name} on the alpha-bar chain [derivation]", _b, _r)
