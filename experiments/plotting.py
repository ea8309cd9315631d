"""Shared figure helpers of the studies: the papers' sampler names and slope triangles."""
from __future__ import annotations

import math
from typing import Mapping, Optional

__all__ = ["PAPER_NAMES", "paper_label", "slope_triangle"]

#: how the papers name each sampler (legends and tables)
PAPER_NAMES = {
    "euler": "DDIM (exp. Euler)",
    "heun": "EDM Heun",
    "dpm_solver_2": "DPM-Solver-2",
    "dpm_solver_3": "DPM-Solver-3",
    "dpmpp_2s": "DPM-Solver++(2S)",
    "res_2s": "RES-2S",
    "res_3s": "RES-3S",
    "li_ddim": "DDIM-type (Li et al.)",
    "li_accel_ode": "accelerated ODE (Li et al.)",
    "li_accel_ode_1nfe": "accelerated ODE, 1 NFE (Li et al.)",
    "lagrange": "Lagrange sampler (Li et al.)",
    "dpmpp_2m": "DPM-Solver++(2M)",
    "dpmpp_3m": "DPM-Solver++(3M)",
    "res_2m": "RES-2M",
    "res_3m": "RES-3M",
    "deis": "DEIS",
    "ipndm": "iPNDM",
    "lms": "LMS",
    "unipc": "UniPC",
    "f_ddim": "F-DDIM",
    "f_dpmsolver": "F-DPMSolver",
    "fv_ideal": "ideal forward value",
}


def paper_label(name: str, options: Optional[Mapping] = None) -> str:
    """Legend label of sampler ``name`` as the papers write it, with non-default options."""
    base = PAPER_NAMES.get(name, name)
    if name == "lagrange":
        opts = dict(options or {})
        k = opts.get("K", 2)
        r = opts.get("R")
        return f"Lagrange K={k}" + ("" if r is None or r == k - 1 else f", R={r}")
    if options:
        return base + " (" + ", ".join(f"{k}={v}" for k, v in sorted(options.items())) + ")"
    return base


def slope_triangle(ax, x0: float, y0: float, order: float, *, factor: float = 2.0,
                   color: str = "0.35", text: bool = True) -> None:
    """Draw a reference slope triangle on log-log axes: legs from ``(x0, y0)`` to
    ``(factor x0, y0)`` and down to ``(factor x0, y0 factor^-order)``, labelled with the order."""
    x1 = x0 * factor
    y1 = y0 * factor ** (-order)
    ax.plot([x0, x1, x1, x0], [y0, y0, y1, y0], color=color, lw=0.9, zorder=1)
    if text:
        ax.text(x1 * factor ** 0.08, math.sqrt(y0 * y1), f"{order:g}", color=color,
                fontsize=8, va="center", ha="left")
