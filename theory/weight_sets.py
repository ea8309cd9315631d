"""Printable weight sets for ``samplerlab theory show``: multistep, UniPC and alpha-bar chains.

Each entry shows the symbolic weights of one row (``q`` past values, variable steps) and their
moment conditions from :func:`samplerlab.theory.orders.multistep_orders`: the residual of
applying the weights to each monomial ``tau^k`` against the exact integral of the method's
kernel, zero up to the degree the weights integrate exactly.

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
from .orders import KERNELS, multistep_orders
from .predictor_corrector import unipc_weights_sym
from .alpha_bar_chain import chain_derivation

__all__ = []


def _render(title, symbols, weights, residuals, latex):
    fmt = sp.latex if latex else str
    lines = [title, "symbols: " + ", ".join(f"{k}" for k in symbols)]
    for i, w in enumerate(weights):
        lines.append(f"  w_{i} = {fmt(w)}")
    if residuals:
        stiff, classical, rows = residuals
        lines.append("moment conditions (weights applied to tau^k minus the exact kernel "
                     "integral; theory.orders.multistep_orders):")
        for row in rows:
            status = "holds for every step" if row["holds"] else (
                f"residual {row['residual']}" + (f"  (leading {row['leading']})"
                                                 if row["leading"] else ""))
            lines.append(f"  k = {row['k']}: {status}")
        lines.append(f"order: {classical} (stiff {stiff})")
    return "\n".join(lines)


def _multistep_entry(method: str, q: int, note: str):
    def build(**params):
        if params:
            raise ValueError(f"{method} (q={q}) takes no parameters, got {sorted(params)}")
        symbols, weights = multistep_weights_sym(method, q)
        residuals = multistep_orders(method, q) if method in KERNELS else None
        return (f"{method}, {q} past values — {note}", symbols, weights, residuals)

    def render(obj, latex, order):
        return _render(*obj, latex)

    return build, render


_ENTRIES = {
    "dpmpp_2m": ("dpmpp", 2, "DPM-Solver++(2M) as in the paper (phi_1 only)"),
    "dpmpp_3m": ("dpmpp", 3, "DPM-Solver++(3M) as in the reference code"),
    "res_2m": ("res", 2, "RES multistep, exact exponential Adams"),
    "res_3m": ("res", 3, "exact third-order exponential Adams"),
    "deis_3": ("deis", 3, "DEIS, noise prediction, Lagrange in lambda (weights scaled by "
                          "-sigma_next)"),
    "lms_4": ("lms", 4, "linear multistep in sigma, exact Lagrange weights"),
    "ipndm_4": ("ipndm", 4, "iPNDM fixed-step Adams-Bashforth-4 weights (equal steps)"),
    "li_accel_ode_1nfe": ("li_accel_ode_1nfe", 2,
                          "seed 002, 1-NFE accelerated ODE sampler (arcsin closed form)"),
}

for _name, (_method, _q, _note) in _ENTRIES.items():
    _build, _render_fn = _multistep_entry(_method, _q, _note)
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
