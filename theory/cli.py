"""``samplerlab theory``: print named tableaux / weight sets and their order-condition residuals.

    samplerlab theory list
    samplerlab theory show NAME [--param k=v ...] [--latex] [--order N]

Wiring: ``experiments/cli.py`` calls :func:`add_parser` with its subparsers; the parser sets
``func`` (returns an int exit code: 0 ok, 2 bad name / parameter).

Other theory objects are added with :func:`register_entry` (a name, a one-line description, a
``build(**params)`` factory and a ``render(obj, latex, order) -> str``); the named exponential RK
tableaux of :mod:`samplerlab.theory.exp_rk` are registered here.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, Callable, Dict

import sympy

from samplerlab.theory import exp_rk

__all__ = ["add_parser", "register_entry", "THEORY_ENTRIES", "TheoryEntry", "render_tableau",
           "parse_params"]


@dataclasses.dataclass(frozen=True)
class TheoryEntry:
    description: str
    build: Callable[..., Any]
    render: Callable[[Any, bool, int], str]


#: name -> entry shown by ``samplerlab theory list`` / ``show``
THEORY_ENTRIES: Dict[str, TheoryEntry] = {}


def register_entry(name: str, description: str, build: Callable[..., Any],
                   render: Callable[[Any, bool, int], str]) -> None:
    """Make ``name`` printable by ``samplerlab theory show``."""
    if name in THEORY_ENTRIES:
        raise ValueError(f"theory entry {name!r} registered twice")
    THEORY_ENTRIES[name] = TheoryEntry(description, build, render)


def render_tableau(tab: exp_rk.ExpRKTableau, latex: bool = False, order: int = 3) -> str:
    """The tableau (pretty text or LaTeX) and its stiff order-condition residuals."""
    lines = []
    if latex:
        lines.append(f"% {tab.name}" + "".join(f", {k} = {v}" for k, v in tab.params))
        lines.append(tab.latex())
    else:
        lines.append(tab.to_str())
    lines.append("")
    lines.append(f"stiff order conditions (Hochbruck-Ostermann) up to order {order}; "
                 "each residual must vanish:")
    for r in exp_rk.check_stiff_conditions(tab, order):
        if r.holds:
            status = "holds for all h"
        elif r.holds_as_h_to_0:
            status = "only as h -> 0 (leading term " + (
                sympy.latex(r.leading) if latex else str(r.leading)) + ")"
        else:
            status = "violated (h -> 0 limit " + (sympy.latex(r.leading) if latex
                                                  else str(r.leading)) + ")"
        lines.append(f"  {r.name:9s} [{r.statement}]: {status}")
        if not r.holds:
            res = sympy.latex(r.residual) if latex else str(r.residual)
            lines.append(f"      residual = {res}")
    return "\n".join(lines)


def _tableau_builder(name: str):
    return lambda **params: exp_rk.get_tableau(name, **params)


for _name, (_factory, _defaults) in exp_rk.EXP_RK_TABLEAUX.items():
    _doc = (_factory.__doc__ or _name).strip().splitlines()[0].replace("``", "")
    if _defaults:
        _doc += "  [params: " + ", ".join(f"{k}={v}" for k, v in _defaults.items()) + "]"
    register_entry(_name, _doc, _tableau_builder(_name), render_tableau)
del _name, _factory, _defaults, _doc


def parse_params(items) -> Dict[str, Any]:
    """``["c2=1/3", "r=0.5"]`` -> ``{"c2": Rational(1, 3), "r": Rational(1, 2)}`` (ValueError)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--param expects k=v, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k.isidentifier():
            raise ValueError(f"--param: bad parameter name {k!r}")
        try:
            out[k] = sympy.Rational(v.strip())
        except (TypeError, ValueError, ZeroDivisionError):
            raise ValueError(f"--param {k}: expected a finite number such as 1/3 or 0.5, got "
                             f"{v!r}") from None
    return out


def _cmd_list(args) -> int:
    width = max(len(n) for n in THEORY_ENTRIES)
    for name in sorted(THEORY_ENTRIES):
        print(f"{name:{width}s}  {THEORY_ENTRIES[name].description}")
    return 0


def _cmd_show(args) -> int:
    if args.name not in THEORY_ENTRIES:
        print(f"samplerlab theory: unknown name {args.name!r}; known: "
              f"{', '.join(sorted(THEORY_ENTRIES))}", file=sys.stderr)
        return 2
    entry = THEORY_ENTRIES[args.name]
    try:
        params = parse_params(args.param)
        obj = entry.build(**params)
    except (ValueError, TypeError) as exc:
        print(f"samplerlab theory show {args.name}: {exc}", file=sys.stderr)
        return 2
    print(entry.render(obj, args.latex, args.order))
    return 0


def _cmd_help(parser):
    def run(args) -> int:
        parser.print_help()
        return 0
    return run


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``theory`` (with ``list`` and ``show``) on an argparse subparsers object."""
    p = subparsers.add_parser("theory", help="print named tableaux and their order conditions",
                              description="Print named tableaux / weight sets and their "
                                          "order-condition residuals.")
    p.set_defaults(func=_cmd_help(p))
    sub = p.add_subparsers(dest="theory_command")
    pl = sub.add_parser("list", help="list the printable names")
    pl.set_defaults(func=_cmd_list)
    ps = sub.add_parser("show", help="print a tableau / weight set and its condition residuals")
    ps.add_argument("name")
    ps.add_argument("--param", action="append", default=[], metavar="K=V",
                    help="parameter, e.g. --param c2=1/3 (repeatable)")
    ps.add_argument("--latex", action="store_true", help="LaTeX instead of pretty text")
    ps.add_argument("--order", type=int, default=3, choices=(1, 2, 3, 4),
                    help="highest order of conditions to check (default 3)")
    ps.set_defaults(func=_cmd_show)
    return p


# the weight sets (multistep, UniPC, alpha-bar chains) register themselves on import
from samplerlab.theory import weight_sets  # noqa: E402,F401
