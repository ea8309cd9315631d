"""Training AMED predictors on exact Gaussian-mixture targets, and saving/loading them.

Recipe (paper §3.4 and the authors' ``training/loss.py``/``training_loop.py``, as pinned down by
shared/papers/notes-amed-and-diff-sampler.md A8 and C2-C4):

* per batch: starting points ``x_T`` -- exact samples of the noised marginal at ``sigma_max``
  (seeded) -- and their teacher trajectory at the student's grid points:

  - ``teacher='paper'`` (as the paper): a sampler on the same grid family with ``M`` extra
    points per student interval, ``(M+1)(N-1)`` steps, no AFS, sliced at every ``(M+1)``-th
    point (which coincides with a student point -- checked). Defaults: Heun with ``M = 1`` for
    AMED-Solver, the base itself for the plugins (``M = 1`` for DPM-Solver-2, 2 otherwise);
  - ``teacher='exact'`` (possible only because the score is exact): the PF-ODE solution
    (:func:`samplerlab.experiments.reference.solve_pf_ode_path`, DOP853, error < 1e-10);

* for each student interval n: one AMED step (the sampler's own :class:`AMEDStepper.interval`,
  features detached) from the teacher point ``y_n`` (teacher forcing: single-step students, as
  the authors' code) or from the student's own previous output with its multistep history
  carried and detached (rollout: multistep students); loss ``||x_hat_{n+1} - y_{n+1}||^2``
  summed over coordinates, averaged over the batch (the code's squared L2); one Adam step
  (lr 5e-3, betas (0.9, 0.999), eps 1e-8) after each interval, NaN gradients set to 0 and
  +-inf clipped to +-1e5.

Everything is seeded (``config.seed``: the starting points and the predictor's initialisation),
so the same config gives the same predictor bit for bit on the same device.

:func:`save_predictor` writes the state dict, the architecture, the feature map and the settings
the predictor was trained for (sampler, base, grid, AFS, target dimension, ...);
:func:`load_predictor` rebuilds it and refuses a mismatch with ``expect=``/``target=`` with a
ValueError naming what differs (the samplers also refuse a different grid, base, AFS or
dimension at call time).
"""
from __future__ import annotations

import dataclasses
import io
import math
import numbers
from pathlib import Path
from typing import List, Mapping, Optional, Tuple

import torch

from samplerlab.solvers import SOLVERS, grids
from samplerlab.solvers.amed import AMEDPredictor, AMEDStepper, FeatureMap, PLUGIN_BASES, \
    feature_map
from samplerlab.theory.validation import check_positive_int

from .io import atomic_write_bytes
from .reference import solve_pf_ode_path

__all__ = ["AMEDTrainingConfig", "TrainedAMED", "train_amed", "teacher_trajectory",
           "save_predictor", "load_predictor", "FORMAT"]

FORMAT = "samplerlab-amed-predictor/1"
TEACHERS = ("paper", "exact")


@dataclasses.dataclass(frozen=True)
class AMEDTrainingConfig:
    """What to train (defaults: the paper's AMED-Solver recipe at NFE 5, scaled to a CPU).

    base : None for AMED-Solver, else AMED-Plugin's base ('euler', 'dpm_solver_2', 'ipndm',
        'dpmpp_2m').
    steps : student intervals N - 1 (NFE = 2 steps, minus 1 with ``afs``).
    grid, grid_options : the grid family (a name of ``samplerlab.solvers.grids.GRIDS``) and its
        keyword options; the student grid is ``make_grid(grid, steps, **grid_options)``.
    order : iPNDM's order for the ipndm plugin (default 4).
    teacher, teacher_sampler, inserted : see the module docstring (``inserted`` is M).
    features : 'responsibilities', 'projection' or 'zeros' (notes C3); ``feature_seed`` seeds
        the projection.
    n_train, batch_size : trajectories and batch (the paper: 10k and 128).
    student_input : 'teacher' (teacher forcing; single-step students only) or 'rollout';
        default as the authors' code.
    """

    base: Optional[str] = None
    steps: int = 3
    grid: str = "karras"
    grid_options: Tuple[Tuple[str, object], ...] = (("sigma_min", 0.002), ("sigma_max", 80.0))
    afs: bool = True
    order: Optional[int] = None
    teacher: str = "paper"
    teacher_sampler: Optional[str] = None
    inserted: Optional[int] = None
    features: str = "responsibilities"
    feature_seed: int = 0
    n_train: int = 2048
    batch_size: int = 128
    lr: float = 5e-3
    betas: Tuple[float, float] = (0.9, 0.999)
    scale_dir: float = 0.01
    scale_time: float = 0.0
    hidden: int = 128
    student_input: Optional[str] = None
    seed: int = 0

    def __post_init__(self):
        if self.base is not None and self.base not in PLUGIN_BASES:
            raise ValueError(f"AMED-Plugin does not support base sampler {self.base!r}; "
                             f"supported: {', '.join(sorted(PLUGIN_BASES))}")
        check_positive_int(self.steps, "steps")
        check_positive_int(self.n_train, "n_train")
        check_positive_int(self.batch_size, "batch_size")
        if self.teacher not in TEACHERS:
            raise ValueError(f"teacher must be one of {TEACHERS}, got {self.teacher!r}")
        if self.teacher_sampler is not None and self.teacher_sampler not in SOLVERS:
            raise ValueError(f"teacher_sampler {self.teacher_sampler!r} is not a registered sampler")
        if self.inserted is not None:
            check_positive_int(self.inserted, "inserted", minimum=0)
        if self.student_input not in (None, "teacher", "rollout"):
            raise ValueError(f"student_input must be 'teacher' or 'rollout', got "
                             f"{self.student_input!r}")
        if self.student_input == "teacher" and self.multistep:
            raise ValueError(f"student_input='teacher' needs a single-step student; base "
                             f"{self.base!r} is multistep (its history comes from its own rollout)")
        if not (isinstance(self.lr, numbers.Real) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not isinstance(self.afs, bool):
            raise TypeError(f"afs must be a bool, got {type(self.afs).__name__}")

    # -- resolved settings ---------------------------------------------------------------------
    @property
    def multistep(self) -> bool:
        return self.base is not None and PLUGIN_BASES[self.base].kind == "multistep"

    @property
    def sampler(self) -> str:
        return "amed" if self.base is None else "amed_plugin"

    @property
    def nfe(self) -> int:
        return 2 * self.steps - int(self.afs)

    def resolved_teacher_sampler(self) -> str:
        if self.teacher_sampler is not None:
            return self.teacher_sampler
        return "heun" if self.base is None else self.base

    def resolved_inserted(self) -> int:
        if self.inserted is not None:
            return int(self.inserted)
        return 1 if self.base in (None, "dpm_solver_2") else 2

    def resolved_student_input(self) -> str:
        if self.student_input is not None:
            return self.student_input
        return "rollout" if self.multistep else "teacher"

    def resolved_order(self) -> Optional[int]:
        if not self.multistep:
            return None
        return PLUGIN_BASES[self.base].default_order if self.order is None else int(self.order)

    def student_grid(self, dtype=torch.float64, device=None) -> torch.Tensor:
        return grids.make_grid(self.grid, self.steps, dtype=dtype, device=device,
                               **dict(self.grid_options))

    def teacher_grid(self, dtype=torch.float64, device=None) -> torch.Tensor:
        k = (self.resolved_inserted() + 1) * self.steps
        return grids.make_grid(self.grid, k, dtype=dtype, device=device, **dict(self.grid_options))

    def sampler_options(self) -> dict:
        opts = {} if self.base is None else {"base": self.base}
        if self.multistep and self.base == "ipndm":
            opts["order"] = self.resolved_order()
        return opts

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["grid_options"] = dict(self.grid_options)
        d["betas"] = list(self.betas)
        return d


@dataclasses.dataclass
class TrainedAMED:
    """A trained predictor and its training log (rows: batch, step, loss, mean L2 error)."""

    predictor: AMEDPredictor
    config: AMEDTrainingConfig
    log: List[dict]


def teacher_trajectory(target, x_start: torch.Tensor, config: AMEDTrainingConfig) -> List[torch.Tensor]:
    """The teacher's states at the student grid points (entry 0 is ``x_start``)."""
    sig = config.student_grid(dtype=x_start.dtype, device=x_start.device)
    if config.teacher == "exact":
        path = solve_pf_ode_path(target, x_start, sig)
        return [path[i] for i in range(path.shape[0])]
    tgrid = config.teacher_grid(dtype=x_start.dtype, device=x_start.device)
    k = config.resolved_inserted() + 1
    sliced = tgrid[::k]
    if sliced.numel() != sig.numel() or not torch.allclose(sliced, sig, rtol=1e-10, atol=0):
        raise ValueError(f"the teacher grid ({config.grid}, {tgrid.numel() - 1} steps) does not "
                         f"contain the student grid at every {k}-th point; use teacher='exact' "
                         f"or a grid family that nests")
    name = config.resolved_teacher_sampler()
    opts = {}
    if name == "ipndm" and config.resolved_order() is not None:
        opts["order"] = config.resolved_order()
    states = [x_start]

    def collect(info):
        if (info["i"] + 1) % k == 0:
            states.append(info["x"])

    SOLVERS[name](target.denoiser, x_start, tgrid, callback=collect, **opts)
    return states


def _settings(config: AMEDTrainingConfig, target, fm: FeatureMap, grid: torch.Tensor) -> dict:
    return {"sampler": config.sampler, "base": config.base, "order": config.resolved_order(),
            "grid": [float(v) for v in grid.tolist()], "grid_name": config.grid,
            "grid_options": dict(config.grid_options), "steps": config.steps, "nfe": config.nfe,
            "afs": config.afs, "target_dim": int(target.dim),
            "n_components": int(target.n_components), "features": fm.describe(),
            "teacher": config.teacher, "teacher_sampler": (
                config.resolved_teacher_sampler() if config.teacher == "paper" else None),
            "inserted": config.resolved_inserted() if config.teacher == "paper" else None,
            "student_input": config.resolved_student_input(), "n_train": config.n_train,
            "batch_size": config.batch_size, "lr": config.lr, "seed": config.seed}


def _sanitize_gradients(params) -> None:
    for p in params:
        if p.grad is not None:
            torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)


def train_amed(target, config: AMEDTrainingConfig, *, progress: bool = False) -> TrainedAMED:
    """Train an AMED predictor for ``config`` on the exact target (module docstring).

    Runs in the target's dtype and on its device. Returns :class:`TrainedAMED`.
    """
    if not isinstance(config, AMEDTrainingConfig):
        raise TypeError(f"config must be an AMEDTrainingConfig, got {type(config).__name__}")
    dtype, device = target.dtype, target.device
    sig = config.student_grid(dtype=dtype, device=device)
    fm = feature_map(config.features, data_dim=target.dim, target=target, seed=config.feature_seed)
    pred = AMEDPredictor(fm, hidden=config.hidden, scale_dir=config.scale_dir,
                         scale_time=config.scale_time, seed=config.seed, dtype=dtype,
                         device=device, settings=_settings(config, target, fm, sig))
    stepper = AMEDStepper(config.base, sig, predictor=pred, afs=config.afs,
                          order=config.resolved_order())
    opt = torch.optim.Adam(pred.parameters(), lr=config.lr, betas=tuple(config.betas), eps=1e-8)
    g = torch.Generator(device=device).manual_seed(int(config.seed))
    rollout = config.resolved_student_input() == "rollout"
    n_batches = math.ceil(config.n_train / config.batch_size)
    log = []
    pred.train()
    for bi in range(n_batches):
        bs = min(config.batch_size, config.n_train - bi * config.batch_size)
        x_start = target.sample(bs, generator=g, sigma=float(sig[0]))
        with torch.no_grad():
            ys = teacher_trajectory(target, x_start, config)
        state = stepper.init_state()
        x_in = x_start
        for n in range(config.steps):
            if not rollout:
                x_in = ys[n]
            x_hat, _ = stepper.interval(target.denoiser, x_in, n, state, detach_features=True)
            err = (x_hat - ys[n + 1]).reshape(bs, -1)
            loss = (err * err).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            _sanitize_gradients(pred.parameters())
            opt.step()
            log.append({"batch": bi, "step": n, "loss": float(loss.detach()),
                        "l2_mean": float(err.detach().norm(dim=1).mean())})
            if rollout:
                x_in = x_hat.detach()
                state = stepper.detach_state(state)
        if progress:
            print(f"AMED training batch {bi + 1}/{n_batches}: loss {log[-1]['loss']:.3e}")
    pred.eval()
    return TrainedAMED(predictor=pred, config=config, log=log)


# ----------------------------------------------------------------------------------------------
# save / load
# ----------------------------------------------------------------------------------------------

def save_predictor(predictor: AMEDPredictor, path) -> Path:
    """Write ``predictor`` (state dict + architecture + features + settings) to ``path``
    atomically (``torch.save``; loadable with ``weights_only=True``)."""
    if not isinstance(predictor, AMEDPredictor):
        raise TypeError(f"predictor must be an AMEDPredictor, got {type(predictor).__name__}")
    blob = {"format": FORMAT, "architecture": predictor.architecture(),
            "features": predictor.features.describe(),
            "settings": predictor.settings,
            "state_dict": {k: v.detach().cpu() for k, v in predictor.state_dict().items()}}
    buf = io.BytesIO()
    torch.save(blob, buf)
    return atomic_write_bytes(path, buf.getvalue())


def _grid_list(grid) -> List[float]:
    if isinstance(grid, torch.Tensor):
        return [float(v) for v in grid.detach().cpu().reshape(-1).tolist()]
    return [float(v) for v in grid]


def _check_expectations(settings: Mapping, expect: Mapping) -> None:
    known = {"grid", "steps", "nfe", "target_dim", "base", "afs", "sampler", "order",
             "n_components"}
    unknown = sorted(set(expect) - known)
    if unknown:
        raise TypeError(f"expect has unknown key(s) {unknown}; known: {sorted(known)}")
    for key, want in expect.items():
        have = settings.get(key)
        if key == "grid":
            w, h = _grid_list(want), _grid_list(have)
            if len(w) != len(h) or any(abs(a - b) > 1e-9 * max(abs(a), 1e-300)
                                       for a, b in zip(w, h)):
                raise ValueError(f"the predictor was trained for the grid {[round(v, 6) for v in h]} "
                                 f"({len(h) - 1} steps); expected {[round(v, 6) for v in w]} "
                                 f"({len(w) - 1} steps)")
        elif have != want:
            raise ValueError(f"the predictor was trained for {key}={have!r}; expected {key}={want!r}")


def load_predictor(path, *, target=None, expect: Optional[Mapping] = None, device=None,
                   dtype: Optional[torch.dtype] = None) -> AMEDPredictor:
    """Load a predictor written by :func:`save_predictor`.

    ``target``: required for 'responsibilities' features (and checked against the trained
    dimension and number of components for any feature kind). ``expect``: settings that must
    match (keys: grid, steps, nfe, target_dim, base, afs, sampler, order, n_components) --
    a mismatch raises ValueError naming the setting.
    """
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not an AMED predictor file (format {FORMAT!r})")
    settings = blob["settings"]
    feats = blob["features"]
    if settings is not None and expect:
        _check_expectations(settings, expect)
    elif expect and settings is None:
        raise ValueError("the predictor file records no training settings to check against")
    data_dim = int(feats["data_dim"])
    if target is not None:
        if target.dim != data_dim:
            raise ValueError(f"the predictor was trained for target dimension {data_dim}; "
                             f"the target has dimension {target.dim}")
        if feats["kind"] == "responsibilities" and target.n_components != feats["dim"]:
            raise ValueError(f"the predictor was trained on a mixture of {feats['dim']} "
                             f"components; the target has {target.n_components}")
    elif feats["kind"] == "responsibilities":
        raise ValueError("this predictor uses 'responsibilities' features: pass target=")
    fm = FeatureMap(feats["kind"], data_dim=data_dim, target=target, seed=int(feats["seed"]),
                    proj_dim=int(feats["dim"]) if feats["kind"] == "projection" else 64)
    arch = dict(blob["architecture"])
    stored = getattr(torch, arch.pop("dtype"))
    pred = AMEDPredictor(fm, dtype=dtype or stored, device=device, settings=settings, **arch)
    pred.load_state_dict(blob["state_dict"])
    pred.eval()
    return pred
