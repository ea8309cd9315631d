"""No sampler modifies a tensor it has handed out: the caller's x, every input the denoiser was
given, every state the callback received. A denoiser may keep its inputs (to record a trajectory,
cache features, take a Jacobian-vector product later); in-place updates of the working state
would silently change what it kept."""
import pytest
import torch

from samplerlab.experiments.targets import GaussianMixture
from samplerlab.solvers import SOLVERS, sample

SIGMAS = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.5, 0.2, 0.0], dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_handed_out_tensors_stay_unchanged(name):
    target = GaussianMixture.random_anisotropic(2, 3, seed=0)
    x = target.sample(8, generator=torch.Generator().manual_seed(0), sigma=10.0)
    x_before = x.clone()
    given, given_copies, states, state_copies = [], [], [], []

    def denoiser(y, sigma):
        given.append(y)
        given_copies.append(y.clone())
        return target.denoiser(y, sigma)

    def callback(info):
        states.append(info["x"])
        state_copies.append(info["x"].clone())

    options = {"max_iter": 200, "tol": 1e-10} if name == "fv_ideal" else {}
    out = sample(name, denoiser, x, SIGMAS, callback=callback,
                 generator=0 if SOLVERS[name].stochastic else None, **options)
    assert torch.isfinite(out).all()
    assert torch.equal(x, x_before), "the caller's x was modified"
    assert len(given) >= SIGMAS.numel() - 2 and len(states) == SIGMAS.numel() - 1
    changed = [i for i, (a, b) in enumerate(zip(given, given_copies)) if not torch.equal(a, b)]
    assert not changed, f"denoiser inputs {changed} were modified after the call"
    changed = [i for i, (a, b) in enumerate(zip(states, state_copies)) if not torch.equal(a, b)]
    assert not changed, f"callback states {changed} were modified after the callback"


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_state_keeps_the_dtype_of_x_when_the_model_answers_wider(name):
    # a float32 state with a model that returns float64 (e.g. a float64 reference model):
    # the sampler's states stay float32, like x
    target = GaussianMixture.random_anisotropic(2, 3, seed=0)
    x = target.sample(8, generator=torch.Generator().manual_seed(0), sigma=10.0).float()
    sigmas = SIGMAS[:-1].float()   # ends above 0: every state comes from the update rule
    dtypes = []
    options = {"max_iter": 200, "tol": 1e-6} if name == "fv_ideal" else {}
    out = sample(name, lambda y, s: target.denoiser(y.double(), s.double()), x, sigmas,
                 callback=lambda info: dtypes.append(info["x"].dtype),
                 generator=0 if SOLVERS[name].stochastic else None, **options)
    assert out.dtype == torch.float32 and set(dtypes) == {torch.float32}
