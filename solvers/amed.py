"""AMED-Solver and AMED-Plugin (seed 004): learned intermediate points and scales per step.

Paper: Zhou, Chen, Wang, Chen, *Fast ODE-based Sampling for Diffusion Models in Around 5 Steps*
(CVPR 2024, arXiv 2312.00094); algorithm, predictor and plugin rules as pinned down by
shared/papers/notes-amed-and-diff-sampler.md, Parts A3-A6 (paper and the authors' code
``zju-pi/diff-sampler``) and C1-C4 (the Gaussian-mixture port). Paraphrased, not copied.

One interval ``t = sigma_n -> t' = sigma_{n+1}`` (VE, ``d = (x - D)/sigma``)
-----------------------------------------------------------------------------
1. ``D_0 = D(x, t)`` -- or, with the analytical first step (AFS, step 0 only), the proxy
   ``d = x/sqrt(1 + t^2)`` (notes A6), i.e. ``D_0 = x (1 - t/sqrt(1 + t^2))``; no NFE.
2. ``(r, c, a) = g(features(x, t, D_0), t, t')`` -- a learned predictor (:class:`AMEDPredictor`;
   zero features on the AFS step) or fixed values; ``r, c, a`` may differ per sample.
3. intermediate point ``s = t'^r t^(1-r) = t e^{-r h}``, ``h = log(t/t')`` (a fraction in
   lambda = -log sigma);
4. the base method's step ``t -> s -> t'`` with the model evaluated at ``a s`` but divided by
   ``s``, and ``c`` scaling the second sub-step:

   * ``amed`` (AMED-Solver, paper Eq. 9): ``x_s = x + (s - t) d_0``,
     ``x' = x + c (t' - t) (x_s - D(x_s, a s))/s`` -- for ``r = 1/2, c = a = 1`` exactly
     DPM-Solver-2 (paper Table 1);
   * ``amed_plugin`` (notes A5) around ``base``:

     - ``euler``: two Euler (DDIM) steps ``t -> s -> t'``, the second's increment times c;
     - ``dpm_solver_2``: the generalised DPM-Solver-2 with the learned r, increment times c;
     - ``ipndm``: the fixed-coefficient Adams-Bashforth of iPNDM over the refined grid
       ``t_0, s_0, t_1, s_1, ...`` (the history holds both kinds of points), the increment of
       each ``s -> t'`` sub-step times c;
     - ``dpmpp_2m``: DPM-Solver++(2M) over the refined grid (order ramp and lower-order final
       counted on the refined grid), c multiplying the model-output (phi) terms of each
       ``s -> t'`` sub-step, as the authors' code; no dynamic thresholding (notes C7).

   NFE: 2 per interval, 1 less with AFS, +1 for a final step to sigma = 0 (the solver's
   denoising step, DESIGN.md).

Where the coefficients come from
--------------------------------
No step formula is typed here. The single-step rows are the exponential RK tableaux of
:mod:`samplerlab.theory.exp_rk` with the node ``r`` left as a sympy symbol -- ``dpm_solver_2``
and ``exponential_euler`` as registered there, and AMED-Solver's own tableau traced below by the
same machinery (:func:`amed_tableau`) -- lambdified onto torch so that ``r`` (and the step) can be
a per-sample tensor, and turned into the linear-step form by the DESIGN.md rule
(``stage_sigma = t e^{-c_i h}``, ``stage_x = e^{-c_i h}``, ``stage_w = h A``, ``out_x = e^{-h}``,
``out_w = h b``). The multistep rows are :func:`samplerlab.theory.multistep.multistep_weights_sym`
lambdified the same way, on the per-sample refined grid. ``c`` and ``a`` act on a row: the scale
replaces ``out_x, out_w`` by ``1 + c (out_x - 1), c out_w`` (increment) or ``out_x, c out_w``
(model-output terms), the time scale multiplies the stage's ``stage_sigma``. The steps are run by
the generic :func:`samplerlab.solvers.steppers.linear_step` / ``combine``, which take per-sample
coefficients. tests/test_amed.py checks every row against theory/'s numeric coefficients and the
fixed-predictor samplers against the registered base samplers.

Order. With the fixed predictor ``r = 1/2, c = a = 1`` and no AFS: ``amed`` = DPM-Solver-2
(order 2); the plugins are their base run on the geometric-midpoint refined grid (euler 1, the
others 2). A fixed ``r != 1/2`` keeps order 2 only for ``dpm_solver_2`` and ``dpmpp_2m`` (AMED's
``b = (0, c)`` needs ``c theta = 1/2 + O(h)``; iPNDM's fixed weights need step ratios
``1 + O(h)``); ``c != 1`` or ``a != 1`` is inconsistent (order 0), and AFS, whose proxy
direction is off by O(1/T) whatever the grid, caps the order at 1. A *trained* predictor has no
asymptotic order (notes A11): the registry reports 0 for it.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Callable, Dict, Optional, Sequence, Tuple

import sympy
import torch

from samplerlab.theory import exp_rk
from samplerlab.theory.exp_rk import ExpRKTableau, h as H_SYMBOL
from samplerlab.theory.multistep import MULTISTEP_METHODS, multistep_coefficients, \
    multistep_weights_sym, row_orders
from samplerlab.theory.phi_functions import PHI_MODULE
from samplerlab.theory.single_step import NODE_MIN, RANGE_RULE

from .progress import Progress
from .registry import Family, OptionRange, SolverSpec, register_family, register_spec
from . import steppers

__all__ = [
    "AMEDPredictor", "FeatureMap", "feature_map", "FEATURE_KINDS", "PLUGIN_BASES",
    "AMEDStepper", "amed_tableau", "tableau_rows", "multistep_row", "afs_denoised",
    "intermediate_sigma", "AMED_PAPER", "LEARNED",
]

LEARNED = "learned"   # the registry family of samplers with a learned per-step predictor
AMED_PAPER = ("Zhou, Chen, Wang, Chen, Fast ODE-based Sampling for Diffusion Models in Around "
              "5 Steps (AMED, CVPR 2024, arXiv 2312.00094) — seed 004")

R_SYMBOL = sympy.Symbol("r", positive=True)
_TORCH_FUNCS = {"exp": torch.exp, "expm1": torch.expm1, "log": torch.log}


# ==============================================================================================
# coefficients: theory/'s tableaux and multistep weights with per-sample r, onto torch
# ==============================================================================================

@functools.lru_cache(maxsize=None)
def amed_tableau() -> ExpRKTableau:
    """AMED-Solver's step with ``c = a = 1`` (paper Eq. 9) as a data-form exponential RK tableau
    in the symbol ``r`` (``samplerlab.solvers.amed.R_SYMBOL``).

    Traced by theory's machinery (as ``exp_rk.dpm_solver_2``): VE, ``eps = (X - D)/sigma``,
    ``sigma_s = sigma_n e^{-r h}``::

        u       = x + (sigma_s - sigma_n) eps(x, sigma_n)            (Euler to s)
        x_{n+1} = x + (sigma_{n+1} - sigma_n) eps(u, sigma_s)       (mean direction at s)

    giving nodes ``(0, r)``, ``a21 = r phi_1(-r h)`` (DPM-Solver-2's stage) and
    ``b = (phi_1(-h) - r phi_1(r h) - (1 - r) phi_1((r - 1) h), r phi_1(r h) + (1 - r) phi_1((r-1) h))``;
    at ``r = 1/2`` this is DPM-Solver-2's tableau (tested symbolically).
    """
    r = R_SYMBOL
    tr = exp_rk._Trace()
    x = tr.x
    e1 = tr.eps(0, x)
    u = x + (tr.sigma(r) - tr.sigma(0)) * e1
    e2 = tr.eps(r, u)
    out = x + (tr.sigma(1) - tr.sigma(0)) * e2
    return exp_rk._tableau_from_trace(
        "amed", tr, out, params={"r": r}, claims=("psi_1,1", "(1)"),
        source="AMED-Solver (Zhou et al., CVPR 2024) Eq. 9 with c = 1, traced to data form")


@functools.lru_cache(maxsize=None)
def _symbolic_tableau(name: str) -> ExpRKTableau:
    if name == "amed":
        return amed_tableau()
    if name == "dpm_solver_2":
        return exp_rk.get_tableau("dpm_solver_2", r=R_SYMBOL)
    if name == "euler":
        return exp_rk.get_tableau("euler")
    raise ValueError(f"no per-sample tableau for {name!r}; known: 'amed', 'dpm_solver_2', 'euler'")


def _lambdify(args, exprs):
    return sympy.lambdify(args, list(exprs), modules=[PHI_MODULE, _TORCH_FUNCS, "math"],
                           cse=True)  # each phi_k(arg) once per step


@functools.lru_cache(maxsize=None)
def _compiled_tableau(name: str):
    """``f(h, r) -> (stage_x list, {(i, j): h a_ij}, [h b_i])`` for the named tableau (torch)."""
    tab = _symbolic_tableau(name)
    s = tab.stages
    nodes = [sympy.exp(-sympy.sympify(ci) * H_SYMBOL) for ci in tab.c]
    pairs = [(i, j) for i in range(s) for j in range(i) if tab.A[i, j] != 0]
    exprs = nodes + [sympy.expand(H_SYMBOL * tab.A[i, j]) for i, j in pairs] + \
        [sympy.expand(H_SYMBOL * tab.b[i]) for i in range(s)]
    fn = _lambdify((H_SYMBOL, R_SYMBOL), exprs)
    return s, pairs, fn


def _as_tensor(v, like: torch.Tensor) -> torch.Tensor:
    return v if isinstance(v, torch.Tensor) else torch.as_tensor(v, dtype=like.dtype,
                                                                 device=like.device)


def tableau_rows(name: str, sigma_from: torch.Tensor, sigma_to: torch.Tensor,
                 r: Optional[torch.Tensor] = None):
    """Linear-step row of the tableau ``name`` ('amed', 'dpm_solver_2', 'euler') for the steps
    ``sigma_from -> sigma_to`` with node parameter ``r`` (tensors: 0-d or ``[batch]``).

    Returns ``(stage_sigma, stage_x, stage_w, out_x, out_w)`` as lists of tensors (one per stage
    / stage pair), by the DESIGN.md rule for exponential RK tableaux. Differentiable in ``r`` and
    in the sigmas (autograd).
    """
    s, pairs, fn = _compiled_tableau(name)
    hh = torch.log(sigma_from / sigma_to)
    rr = hh.new_tensor(0.5) if r is None else r
    vals = [_as_tensor(v, hh) for v in fn(hh, rr)]
    stage_x = vals[:s]
    a_vals = dict(zip(pairs, vals[s:s + len(pairs)]))
    out_w = vals[s + len(pairs):]
    stage_sigma = [sigma_from * sx for sx in stage_x]
    stage_w = [[a_vals.get((i, j), 0.0) for j in range(s)] for i in range(s)]
    out_x = sigma_to / sigma_from
    return stage_sigma, stage_x, stage_w, out_x, out_w


@functools.lru_cache(maxsize=None)
def _compiled_multistep(method: str, q: int):
    names, weights = multistep_weights_sym(method, q)
    return tuple(names), _lambdify(tuple(names.values()), weights)


def multistep_row(method: str, q: int, past_sigmas: Sequence[torch.Tensor],
                  sigma_to: torch.Tensor):
    """Weights of ``F_n, F_{n-1}, ...`` for one step ``past_sigmas[0] -> sigma_to`` of the
    multistep ``method`` ('ipndm', 'dpmpp', 'res', 'deis', 'lms') using ``q`` past values at the
    (per-sample) levels ``past_sigmas`` (newest first), from theory's symbolic weights.

    Returns ``(out_x, weights)``: ``out_x = sigma_to/sigma_n`` for data-form methods
    (``e^{-h}``) and 1 for noise-form ones (DESIGN.md, "Multistep methods").
    """
    names, fn = _compiled_multistep(method, q)
    sn = past_sigmas[0]
    h = torch.log(sn / sigma_to)
    args = []
    for nm in names:
        if nm == "h":
            args.append(h)
        elif nm == "step":
            args.append(sigma_to - sn)
        elif nm == "sigma_next":
            args.append(sigma_to)
        elif nm.startswith("s") and nm[1:].isdigit():
            j = int(nm[1:])
            if j < q:
                node = (past_sigmas[j] - sn) if method in ("lms", "ipndm_v") else \
                    torch.log(sn / past_sigmas[j])
                args.append(node / ((sigma_to - sn) if method in ("lms", "ipndm_v") else h))
            else:                       # unused by this row (dpmpp's s2 when q < 3)
                args.append(h.new_tensor(-float(j)))
        else:
            raise ValueError(f"multistep_row: unsupported symbol {nm!r} of {method!r}")
    weights = [_as_tensor(w, h) for w in fn(*args)]
    out_x = sigma_to / sn if _prediction(method) == "data" else 1.0
    return out_x, weights


@functools.lru_cache(maxsize=None)
def _prediction(method: str) -> str:
    probe = multistep_coefficients(method, [4.0, 2.0], 1)
    return probe.prediction


def intermediate_sigma(sigma_from, sigma_to, r):
    """``s = sigma_to^r sigma_from^(1-r) = sigma_from e^{-r h}`` (the stage level of theory's
    node ``r``)."""
    return sigma_from * torch.exp(-r * torch.log(sigma_from / sigma_to))


def afs_denoised(x: torch.Tensor, sigma) -> torch.Tensor:
    """The analytical first step's stand-in for ``D(x, sigma)`` (notes A6, GENIE's trick in VE
    form): direction ``d = x/sqrt(1 + sigma^2)``, i.e. ``D = x - sigma d``."""
    sigma = _as_tensor(sigma, x)
    return x * (1.0 - sigma / torch.sqrt(1.0 + sigma * sigma))


def _scale(rows, c, mode):
    """Apply the scale ``c`` to a row's output: 'increment' (x + c (Phi(x) - x)) or 'weights'
    (the model-output terms only)."""
    out_x, out_w = rows
    if mode == "increment":
        out_x = 1.0 + c * (out_x - 1.0)
    out_w = [c * w for w in out_w]
    return out_x, out_w


# ==============================================================================================
# features standing in for the U-Net bottleneck (notes C3) and the predictor (notes A4, C4)
# ==============================================================================================

FEATURE_KINDS = ("responsibilities", "projection", "zeros")


class FeatureMap:
    """Per-sample features of the evaluation at ``(x, sigma)``: ``fm(x, sigma, denoised) -> [B, F]``.

    Kinds (notes C3): ``'responsibilities'`` -- the mixture's posterior component probabilities
    ``w(x, sigma)`` (a by-product of evaluating D on a mixture; needs ``target`` with
    ``responsibilities(x, sigma)`` and ``n_components``); ``'projection'`` -- a fixed seeded
    Gaussian projection of ``D(x, sigma)`` to ``proj_dim`` numbers (as the real network's 64
    channel means); ``'zeros'`` -- one zero feature (the predictor reduces to per-step constants,
    as the authors' Diffusers deployment).
    """

    def __init__(self, kind: str, *, data_dim: int, target=None, seed: int = 0,
                 proj_dim: int = 64):
        if kind not in FEATURE_KINDS:
            raise ValueError(f"features must be one of {FEATURE_KINDS}, got {kind!r}")
        self.kind = kind
        self.data_dim = int(data_dim)
        self.seed = int(seed)
        self.target = None
        if kind == "responsibilities":
            if target is None or not hasattr(target, "responsibilities"):
                raise ValueError("features='responsibilities' needs target= (an object with "
                                 "responsibilities(x, sigma), e.g. a GaussianMixture)")
            if target.dim != self.data_dim:
                raise ValueError(f"target has dimension {target.dim}, features were set up for "
                                 f"dimension {self.data_dim}")
            self.target = target
            self.dim = int(target.n_components)
        elif kind == "projection":
            self.dim = int(proj_dim)
            g = torch.Generator().manual_seed(self.seed)
            self._proj64 = torch.randn(self.data_dim, self.dim, generator=g,
                                       dtype=torch.float64) / math.sqrt(self.data_dim)
            self._proj_cache: Dict = {}
        else:
            self.dim = 1

    def describe(self) -> dict:
        return {"kind": self.kind, "dim": self.dim, "data_dim": self.data_dim, "seed": self.seed}

    def __call__(self, x: torch.Tensor, sigma, denoised: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if x[0].numel() != self.data_dim:
            raise ValueError(f"features were set up for dimension {self.data_dim}, x has "
                             f"{x[0].numel()} values per sample")
        if self.kind == "responsibilities":
            t = self.target
            x2 = x.reshape(b, -1).to(dtype=t.dtype, device=t.device)
            return t.responsibilities(x2, _as_tensor(sigma, x2)).to(dtype=x.dtype, device=x.device)
        if self.kind == "projection":
            key = (x.device, x.dtype)
            if key not in self._proj_cache:
                self._proj_cache[key] = self._proj64.to(device=x.device, dtype=x.dtype)
            return denoised.reshape(b, -1) @ self._proj_cache[key]
        return x.new_zeros(b, 1)


def feature_map(kind: str, *, data_dim: int, target=None, seed: int = 0) -> FeatureMap:
    """:class:`FeatureMap` factory (same arguments)."""
    return FeatureMap(kind, data_dim=data_dim, target=target, seed=seed)


def _sinusoidal(sigma: torch.Tensor, channels: int, max_positions: float) -> torch.Tensor:
    """EDM's positional embedding of the raw noise level (endpoint frequencies
    ``max_positions^(-i/(C/2-1))``), sin half first (the authors swap cos/sin)."""
    half = channels // 2
    i = torch.arange(half, dtype=sigma.dtype, device=sigma.device)
    freqs = (1.0 / max_positions) ** (i / max(half - 1, 1))
    arg = sigma.reshape(-1, 1) * freqs
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


class AMEDPredictor(torch.nn.Module):
    """The AMED predictor ``g(features, t, t') -> (r, c, a)`` (paper Fig. 6 / Eq. 11, notes A4).

    * time branch: each of ``t, t'`` (raw sigma) through an 8-channel sinusoidal embedding, a
      shared ``Linear(8, 8)`` and SiLU (Xavier-uniform weights);
    * feature branch: ``Linear(F, hidden)``, SiLU, ``Linear(hidden, 4)`` (EDM's default
      initialisation: normal weights with std ``1/sqrt(fan_in)``, zero biases);
    * heads on the 20 numbers: ``r = sigmoid(.)``; ``c = 1 - S_d + 2 S_d sigmoid(.)`` (``S_d =
      scale_dir``, c fixed at 1 when 0); ``a = 1 - S_t + 2 S_t sigmoid(.)`` (``scale_time``;
      a fixed at 1 when 0).

    ``features`` (a :class:`FeatureMap`) computes the inputs; ``settings`` (a dict, set by
    training) records what the predictor was trained for -- the samplers refuse another grid,
    base, AFS setting or dimension. Initialisation is seeded (``seed``).
    """

    def __init__(self, features: FeatureMap, *, hidden: int = 128, time_channels: int = 8,
                 scale_dir: float = 0.01, scale_time: float = 0.0, max_positions: float = 1e4,
                 seed: int = 0, dtype: torch.dtype = torch.float64, device=None,
                 settings: Optional[dict] = None):
        super().__init__()
        if not isinstance(features, FeatureMap):
            raise TypeError(f"features must be a FeatureMap, got {type(features).__name__}")
        for nm, v in (("scale_dir", scale_dir), ("scale_time", scale_time)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v < 1:
                raise ValueError(f"{nm} must be a number in [0, 1), got {v!r}")
        self.features = features
        self.scale_dir = float(scale_dir)
        self.scale_time = float(scale_time)
        self.time_channels = int(time_channels)
        self.max_positions = float(max_positions)
        self.hidden = int(hidden)
        self.settings = dict(settings) if settings is not None else None
        kw = dict(dtype=dtype, device=device)
        self.time_linear = torch.nn.Linear(time_channels, time_channels, **kw)
        self.feat_in = torch.nn.Linear(features.dim, hidden, **kw)
        self.feat_out = torch.nn.Linear(hidden, 4, **kw)
        width = 4 + 2 * time_channels
        self.head_r = torch.nn.Linear(width, 1, **kw)
        self.head_c = torch.nn.Linear(width, 1, **kw) if scale_dir > 0 else None
        self.head_a = torch.nn.Linear(width, 1, **kw) if scale_time > 0 else None
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for lin in [self.time_linear, self.feat_in, self.feat_out, self.head_r,
                        self.head_c, self.head_a]:
                if lin is None:
                    continue
                fan_in, fan_out = lin.in_features, lin.out_features
                if lin is self.time_linear:
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                    w = (torch.rand(fan_out, fan_in, generator=g, dtype=torch.float64) * 2 - 1) * bound
                else:
                    w = torch.randn(fan_out, fan_in, generator=g, dtype=torch.float64) / math.sqrt(fan_in)
                lin.weight.copy_(w.to(lin.weight))
                lin.bias.zero_()

    def forward(self, feats: torch.Tensor, sigma_cur, sigma_next):
        """``(r, c, a)``, each ``[B]`` in the predictor's dtype."""
        p = self.feat_in.weight
        feats = feats.to(dtype=p.dtype, device=p.device)
        b = feats.shape[0]
        t = torch.stack([torch.as_tensor(sigma_cur, dtype=p.dtype, device=p.device).reshape(()),
                         torch.as_tensor(sigma_next, dtype=p.dtype, device=p.device).reshape(())])
        emb = torch.nn.functional.silu(self.time_linear(
            _sinusoidal(t, self.time_channels, self.max_positions)))          # [2, C]
        emb = emb.reshape(1, -1).expand(b, -1)
        z = self.feat_out(torch.nn.functional.silu(self.feat_in(feats)))
        z = torch.cat([z, emb], dim=1)
        r = torch.sigmoid(self.head_r(z)).reshape(b)
        one = torch.ones(b, dtype=p.dtype, device=p.device)
        c = one if self.head_c is None else \
            1.0 - self.scale_dir + 2.0 * self.scale_dir * torch.sigmoid(self.head_c(z)).reshape(b)
        a = one if self.head_a is None else \
            1.0 - self.scale_time + 2.0 * self.scale_time * torch.sigmoid(self.head_a(z)).reshape(b)
        return r, c, a

    def architecture(self) -> dict:
        """The constructor arguments (saved with the state dict)."""
        return {"hidden": self.hidden, "time_channels": self.time_channels,
                "scale_dir": self.scale_dir, "scale_time": self.scale_time,
                "max_positions": self.max_positions,
                "dtype": str(self.feat_in.weight.dtype).replace("torch.", "")}


# ==============================================================================================
# the AMED step (one interval), shared by sampling and training
# ==============================================================================================

@dataclasses.dataclass(frozen=True)
class _Base:
    kind: str                 # 'solver' (amed), 'single', 'split' (euler), 'multistep'
    tableau: str = ""
    method: str = ""
    orders: Tuple[int, ...] = ()
    default_order: int = 1
    scale: str = "increment"  # how c acts: 'increment' or 'weights'
    lower_order_final: bool = False


PLUGIN_BASES: Dict[str, _Base] = {
    "euler": _Base("split", tableau="euler"),
    "dpm_solver_2": _Base("single", tableau="dpm_solver_2"),
    "ipndm": _Base("multistep", method="ipndm", orders=(1, 2, 3, 4), default_order=4),
    "dpmpp_2m": _Base("multistep", method="dpmpp", orders=(2,), default_order=2,
                      scale="weights", lower_order_final=True),
}
_SOLVER = _Base("solver", tableau="amed")


def _base(base: Optional[str]) -> _Base:
    if base is None:
        return _SOLVER
    if base not in PLUGIN_BASES:
        raise ValueError(f"AMED-Plugin does not support base sampler {base!r}; supported: "
                         f"{', '.join(sorted(PLUGIN_BASES))}")
    return PLUGIN_BASES[base]


def _fixed(value, name, m, default, low, high, high_closed):
    """A fixed per-step value: None (default), a number, or a sequence of m numbers."""
    if value is None:
        return [float(default)] * m
    vals = list(value) if isinstance(value, (list, tuple)) else [value] * m
    if len(vals) != m:
        raise ValueError(f"{name} must be a number or {m} numbers (one per step), got {len(vals)}")
    out = []
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{name} must be finite real numbers, got {v!r}")
        if not (low < v < high or (high_closed and v == high)):
            raise ValueError(f"{name} must lie in ({low}, {high}{']' if high_closed else ')'}, "
                             f"got {v!r}")
        out.append(float(v))
    return out


class AMEDStepper:
    """AMED on one grid: the per-interval step used by the samplers and by training.

    Parameters
    ----------
    base : None for AMED-Solver, else the plugin's base ('euler', 'dpm_solver_2', 'ipndm',
        'dpmpp_2m'; anything else raises ValueError naming it).
    sigmas : the positive grid ``[m + 1]`` (x's dtype/device).
    predictor : an :class:`AMEDPredictor` or None (then ``r, c, a`` fixed: numbers or one per
        step; defaults 1/2, 1, 1).
    afs : analytical first step.
    order : iPNDM's order (1-4, default 4); the other bases take none.
    """

    def __init__(self, base, sigmas: torch.Tensor, *, predictor=None, r=None, c=None, a=None,
                 afs: bool = False, order: Optional[int] = None):
        self.base_name = base
        self.base = _base(base)
        self.sigmas = sigmas
        self.m = sigmas.numel() - 1
        if predictor is not None and not isinstance(predictor, AMEDPredictor):
            raise TypeError(f"predictor must be an AMEDPredictor or None, got "
                            f"{type(predictor).__name__}")
        if predictor is not None and any(v is not None for v in (r, c, a)):
            raise ValueError("give either predictor= or fixed r=/c=/a=, not both")
        self.predictor = predictor
        self.fixed = None if predictor is not None else (
            _fixed(r, "r", self.m, 0.5, 0.0, 1.0, False),
            _fixed(c, "c", self.m, 1.0, 0.0, math.inf, False),
            _fixed(a, "a", self.m, 1.0, 0.0, math.inf, False))
        if not isinstance(afs, bool):
            raise TypeError(f"afs must be a bool, got {type(afs).__name__}")
        self.afs = afs
        b = self.base
        if b.kind == "multistep":
            k = b.default_order if order is None else order
            if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k not in b.orders:
                raise ValueError(f"order must be one of {list(b.orders)} for base {base!r}, "
                                 f"got {order!r}")
            self.order = int(k)
            spec = MULTISTEP_METHODS[b.method]
            lof_below = spec.lower_order_final_below if b.lower_order_final else None
            self.orders = row_orders(2 * self.m, self.order, b.lower_order_final,
                                     lof_below).tolist()
        elif order is not None:
            raise ValueError(f"order is an option of the multistep bases only, not of "
                             f"{base or 'amed'!r}")

    # -- state ---------------------------------------------------------------------------
    def init_state(self) -> dict:
        """Carried between intervals: the multistep history (values newest first)."""
        return {"F": [], "sig": []}

    @staticmethod
    def detach_state(state: dict) -> dict:
        return {"F": [f.detach() for f in state["F"]], "sig": [s.detach() for s in state["sig"]]}

    # -- the learned/fixed coefficients ----------------------------------------------------------
    def coefficients(self, n: int, x: torch.Tensor, d0: torch.Tensor, proxy: bool,
                     detach_features: bool = False):
        """``(r, c, a)`` per sample ``[B]`` in x's dtype for interval n."""
        b = x.shape[0]
        t, tn = self.sigmas[n], self.sigmas[n + 1]
        if self.predictor is None:
            r, c, a = (x.new_full((b,), v[n]) for v in self.fixed)
            return r, c, a
        fm = self.predictor.features
        if proxy:
            feats = x.new_zeros(b, fm.dim)
        elif detach_features:
            with torch.no_grad():
                feats = fm(x.detach(), t, d0.detach())
        else:
            feats = fm(x, t, d0)
        if feats.shape != (b, fm.dim):
            raise ValueError(f"features at step {n} have shape {tuple(feats.shape)}; the predictor "
                             f"expects [{b}, {fm.dim}]")
        if not torch.isfinite(feats).all():
            raise ValueError(f"AMED features ({fm.kind}) at step {n} (sigma={float(t):.4g}) hold "
                             f"NaN or inf; the predictor needs finite features")
        r, c, a = self.predictor(feats, t, tn)
        out = tuple(v.to(dtype=x.dtype, device=x.device) for v in (r, c, a))
        if not all(torch.isfinite(v).all() for v in out):
            raise ValueError(f"AMED predictor returned NaN or inf at step {n}")
        return out

    # -- one interval --------------------------------------------------------------------------
    def interval(self, denoiser: Callable, x: torch.Tensor, n: int, state: Optional[dict] = None,
                 *, detach_features: bool = False):
        """Step ``sigma_n -> sigma_{n+1}``; returns ``(x_next, info)`` (info: d0, r, c, a, s)."""
        t, tn = self.sigmas[n], self.sigmas[n + 1]
        proxy = self.afs and n == 0
        if proxy:
            d0 = afs_denoised(x, t)
        else:
            d0 = steppers._check_output(denoiser(x, t), x, f"step {n}")
        r, c, a = self.coefficients(n, x, d0, proxy, detach_features)
        tb = t.expand(x.shape[0])
        tnb = tn.expand(x.shape[0])
        s = intermediate_sigma(tb, tnb, r)
        b = self.base
        where = f"step {n}"
        if b.kind in ("solver", "single"):
            # h is one number for the batch: only the node r varies per sample
            st_sig, st_x, st_w, out_x, out_w = tableau_rows(b.tableau, t, tn, r)
            st_sig = [st_sig[0], a * st_sig[1]]
            out_x, out_w = _scale((out_x, out_w), c, b.scale)
            x_next, _ = steppers.linear_step(denoiser, x, st_sig, st_x, st_w, out_x, out_w,
                                             d0=d0, where=where)
        elif b.kind == "split":
            st_sig, st_x, st_w, out_x, out_w = tableau_rows(b.tableau, tb, s)
            x_s, _ = steppers.linear_step(denoiser, x, st_sig, st_x, st_w, out_x, out_w, d0=d0,
                                          where=where + " (to s)")
            st_sig, st_x, st_w, out_x, out_w = tableau_rows(b.tableau, s, tnb)
            out_x, out_w = _scale((out_x, out_w), c, b.scale)
            x_next, _ = steppers.linear_step(denoiser, x_s, [a * st_sig[0]], st_x, st_w, out_x,
                                             out_w, where=where + " (from s)")
        else:
            if state is None:
                raise ValueError("multistep bases need the state from init_state()")
            pred = _prediction(b.method)
            hist, sig = state["F"], state["sig"]
            hist.insert(0, steppers.as_prediction(pred, x, d0, tb))
            sig.insert(0, tb)
            out_x, w = multistep_row(b.method, self.orders[2 * n], sig, s)
            x_s = steppers.combine(out_x, x, w, hist)
            d_s = steppers._check_output(denoiser(x_s, a * s), x, where + " (at s)")
            hist.insert(0, steppers.as_prediction(pred, x_s, d_s, s))
            sig.insert(0, s)
            out_x, w = multistep_row(b.method, self.orders[2 * n + 1], sig, tnb)
            out_x, w = _scale((out_x, w), c, b.scale)
            x_next = steppers.combine(out_x, x_s, w, hist)
            del hist[self.order:], sig[self.order:]
        return x_next, {"denoised": d0, "r": r, "c": c, "a": a, "sigma_mid": s}

    def nfe(self, ends_zero: bool) -> int:
        return 2 * self.m - int(self.afs and self.m > 0) + int(ends_zero)


# ==============================================================================================
# the registered samplers
# ==============================================================================================

def _check_predictor_settings(predictor: AMEDPredictor, base, afs, order, grid, x):
    st = predictor.settings
    if st is None:
        return
    want = "amed" if base is None else f"amed_plugin(base={base!r})"
    got = "amed" if st.get("base") is None else f"amed_plugin(base={st.get('base')!r})"
    if want != got:
        raise ValueError(f"the predictor was trained for {got}, not {want}")
    trained = [float(v) for v in st["grid"]]
    g = [float(v) for v in grid]
    steps_t, steps_g = len(trained) - 1, len(g) - 1
    nfe_t = 2 * steps_t - int(bool(st.get("afs")))
    if len(trained) != len(g) or any(abs(u - v) > 1e-9 * max(abs(u), 1e-300)
                                     for u, v in zip(trained, g)):
        raise ValueError(
            f"the predictor was trained for the grid {[round(v, 6) for v in trained]} "
            f"({steps_t} steps, NFE {nfe_t}); got {[round(v, 6) for v in g]} ({steps_g} steps). "
            f"AMED is trained per grid: train one for this grid")
    if bool(st.get("afs")) != afs:
        raise ValueError(f"the predictor was trained with afs={bool(st.get('afs'))}; got afs={afs}")
    if st.get("order") is not None and int(st["order"]) != int(order):
        raise ValueError(f"the predictor was trained for base order {st['order']}; got order {order}")
    dim = int(st["target_dim"])
    if x[0].numel() != dim:
        raise ValueError(f"the predictor was trained for target dimension {dim}; x has "
                         f"{x[0].numel()} values per sample")


def _stepper_builder(plugin: bool):
    """``build(sig, opts) -> (AMEDStepper, ends_zero)`` of AMED-Solver / AMED-Plugin: the
    coefficients depend on the predictor's output per sample, so the family builds a stepper
    on the grid tensor (x's dtype/device) instead of arrays once per grid."""

    def build(sig: torch.Tensor, opts) -> Tuple[AMEDStepper, bool]:
        ends_zero = bool(sig[-1] == 0)
        m = sig.numel() - 1 - int(ends_zero)
        base = opts.get("base") if plugin else None
        afs = opts["afs"]
        pred = opts["predictor"]
        if afs is None:
            afs = bool(pred.settings.get("afs")) if (pred is not None and pred.settings) else False
        return AMEDStepper(base, sig[:m + 1], predictor=pred, r=opts["r"], c=opts["c"],
                           a=opts["a"], afs=afs, order=opts.get("order")), ends_zero

    return build


def _learned_nfe(spec, sig, opts) -> int:
    stepper, ends_zero = spec.build(sig, opts)
    return stepper.nfe(ends_zero)


def _learned_run(spec, denoiser, x, sig, opts, *, generator, callback, progress, check_finite,
                 check_grid):
    # AMED's coefficients are built per sample at run time: its per-step guard (linear_step's
    # output check) is always on and check_grid has nothing precomputed to check (both flags are
    # accepted for the common signature; the final denoise honours check_finite)
    #
    # Half precision (float16/bfloat16): the per-sample coefficients (phi-functions of h, the
    # intermediate levels sqrt-interpolated between grid levels) under- and overflow there, so
    # the intervals run in float32 — state, history and coefficients — while the denoiser still
    # sees x's dtype; every state handed out (callback, result) is cast back to x's dtype.
    work = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    model = denoiser
    if work != x.dtype:
        half = x.dtype

        def model(z, s):
            return denoiser(z.to(half), s.to(half) if isinstance(s, torch.Tensor) else s).to(work)

    stepper, ends_zero = spec.build(sig.to(work), opts)
    if stepper.predictor is not None:
        _check_predictor_settings(stepper.predictor, stepper.base_name, stepper.afs,
                                  getattr(stepper, "order", None), stepper.sigmas.tolist(), x)
    m = stepper.m
    if m < 1:
        return steppers._final_denoise(denoiser, x, sig[0], callback, 0, check_finite)
    state = stepper.init_state()
    out_dtype = x.dtype
    y = x.to(work)
    with Progress(sig.numel() - 1, "sampling", enabled=progress) as bar:
        for n in range(m):
            y, info = stepper.interval(model, y, n, state)
            x = y if work == out_dtype else y.to(out_dtype)
            if work != out_dtype and not bool(torch.isfinite(x).all()):
                raise steppers.NonFiniteError(
                    f"the AMED update at step {n} is not finite in {out_dtype} (sigma = "
                    f"{float(sig[n + 1]):.6g}): the state outgrew the dtype's range")
            steppers._report(callback, bar, n, x, sig, info["denoised"].to(out_dtype),
                             r=info["r"], c=info["c"], a=info["a"],
                             sigma_mid=info["sigma_mid"])
        if ends_zero:
            x = steppers._final_denoise(denoiser, x, sig[m], callback, m, check_finite)
            bar.update()
    return x


#: the registry family of AMED: the per-sample stepper, run interval by interval
LEARNED_FAMILY = register_family(Family(LEARNED, _learned_run, _learned_nfe))


def _validate(plugin: bool):
    def check(opts):
        if plugin:
            _base(opts["base"])
        pred = opts["predictor"]
        if pred is not None and not isinstance(pred, AMEDPredictor):
            raise TypeError(f"predictor must be an AMEDPredictor or None, got "
                            f"{type(pred).__name__}")
        if opts["afs"] is not None and not isinstance(opts["afs"], bool):
            raise TypeError(f"afs must be a bool or None, got {type(opts['afs']).__name__}")
        if pred is not None and any(opts[k] is not None for k in ("r", "c", "a")):
            raise ValueError("give either predictor= or fixed r=/c=/a=, not both")
        if not plugin and opts.get("order") is not None:
            raise ValueError("order is an option of AMED-Plugin's multistep bases only")
        return opts
    return check


def _is_default(v, default):
    vals = v if isinstance(v, (list, tuple)) else [v]
    return all(u is None or u == default for u in vals)


def _order(plugin: bool):
    def order(opts):
        if opts["predictor"] is not None:
            return 0       # learned: no asymptotic order (module docstring)
        if not (_is_default(opts["c"], 1.0) and _is_default(opts["a"], 1.0)):
            return 0
        half = _is_default(opts["r"], 0.5)
        if not plugin:
            base_order = 2 if half else 1
        else:
            base = opts["base"]
            if base == "euler":
                base_order = 1
            elif base == "ipndm":
                k = opts.get("order") or PLUGIN_BASES["ipndm"].default_order
                base_order = (min(k, 2) if half else 1)
            else:
                base_order = 2
        return min(base_order, 1) if opts["afs"] else base_order
    return order


_COMMON = {"predictor": None, "r": None, "c": None, "a": None, "afs": None}

#: the fixed r, c, a (a number or one per step), declared once. r is the intermediate node of
#: the DPM-Solver-2 tableau (AMED-Solver with c = a = 1 is DPM-Solver-2 at node r), whose h -> 0
#: limit weights are 1/(2r): the node minimum of theory.single_step (weight bound) applies.
AMED_RANGES = {
    "r": OptionRange(NODE_MIN, 1.0, high_open=True, why=RANGE_RULE),
    "c": OptionRange(0.0, None, low_open=True, why="the step's scale factor"),
    "a": OptionRange(0.0, None, low_open=True, why="the intermediate noise level's scale"),
}

register_spec(SolverSpec(
    name="amed", family=LEARNED, order=2, stochastic=False, paper=AMED_PAPER,
    summary="AMED-Solver: Euler to s = t'^r t^(1-r), then x' = x + c (t' - t) d(x_s, a s); r, c, a "
            "from a learned predictor (predictor=AMEDPredictor) or fixed (r=1/2, c=1: "
            "DPM-Solver-2); afs=True saves the first NFE; 2 NFE/step",
    defaults=dict(_COMMON), build=_stepper_builder(False), order_fn=_order(False),
    validate=_validate(False), ranges=AMED_RANGES))

register_spec(SolverSpec(
    name="amed_plugin", family=LEARNED, order=2, stochastic=False, paper=AMED_PAPER,
    summary="AMED-Plugin: a learned intermediate point s and scale c inserted into base = euler, "
            "dpm_solver_2, ipndm or dpmpp_2m (multistep bases run on the refined grid t, s, t', "
            "...); fixed r=1/2, c=1 is the base on the geometric-midpoint refined grid; 2 NFE/step",
    defaults=dict(_COMMON, base="dpm_solver_2", order=None), build=_stepper_builder(True),
    order_fn=_order(True), validate=_validate(True), ranges=AMED_RANGES))
