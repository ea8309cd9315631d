"""The order theory/ assigns to each registered sampler (the "theory" column of the order card)."""
from __future__ import annotations

from samplerlab.solvers import SOLVERS
from samplerlab.theory.exp_rk import EXP_RK_TABLEAUX
from samplerlab.theory.orders import exp_rk_orders, multistep_orders

__all__ = ["MULTISTEP_WEIGHT_SETS", "theory_order"]

#: sampler -> (theory.multistep method, number of past values q, kernel, scale symbol) of the
#: weight set its interior rows use (solvers/catalogue.py routes these names to theory/).
MULTISTEP_WEIGHT_SETS = {
    "dpmpp_2m": ("dpmpp", 2), "dpmpp_3m": ("dpmpp", 3), "res_2m": ("res", 2),
    "res_3m": ("res", 3), "deis": ("deis", 3), "ipndm": ("ipndm", 4), "lms": ("lms", 4),
}


def theory_order(name: str) -> str:
    """The order theory/ assigns to sampler ``name`` from its conditions (module docstring)."""
    if name in EXP_RK_TABLEAUX:
        stiff, classical, _ = exp_rk_orders(name)
        return f"{classical} (stiff {stiff})"
    if name in MULTISTEP_WEIGHT_SETS:
        stiff, classical, _ = multistep_orders(*MULTISTEP_WEIGHT_SETS[name])
        if name == "ipndm" and not SOLVERS[name].options().get("variable_step", False):
            # fixed Adams-Bashforth weights: the moment conditions use equal steps (nodes -j)
            return f"{classical} (stiff {stiff}; weights, equal steps only)"
        return f"{classical} (stiff {stiff}; weights)"
    return "\u2014"
