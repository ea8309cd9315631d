"""Study ``score-error`` in quick mode: tables, claims with measured numbers, figures,
determinism."""
from samplerlab.experiments.studies.score_error import SAMPLERS

from _study_checks import test_same_seed_gives_the_same_tables  # noqa: E402,F401

STUDY_NAME = "score-error"  # fixtures `study` and `first_run`: tests/conftest.py


def test_tables_cover_every_sampler_and_eps(first_run):
    _, result = first_run
    tv = result.tables["tv"]
    assert {r["sampler"] for r in tv} == set(SAMPLERS)
    assert {r["denoiser"] for r in tv} >= {"eps=0"}
    assert all(0 <= r["tv"] <= 1 for r in tv)
    # eps = 0 is the discretisation curve: it falls with T for every sampler
    for label in SAMPLERS:
        vals = [r["tv"] for r in sorted((r for r in tv if r["sampler"] == label
                                         and r["denoiser"] == "eps=0"), key=lambda r: r["T"])]
        assert all(b < a for a, b in zip(vals, vals[1:])), label


def test_floor_exponent_is_measured(first_run):
    _, result = first_run
    fits = {r["sampler"]: r for r in result.tables["floor_fits"]}
    ode = fits["ode_limit"]
    assert ode.get("exponent") is not None and ode["ci_low"] <= ode["exponent"] <= ode["ci_high"]
    # the PF-ODE-limit floor is far above the Lagrange sampler's discretisation part
    rows = [r for r in result.tables["floor"] if r["sampler"] == "lagrange_K3" and r["floor_clear"]]
    assert len(rows) >= 3


def test_claims_and_figures(first_run):
    out, result = first_run
    assert len(result.claims) == len(SAMPLERS) + 4   # + the 2-D row
    assert all(c.measured and c.measured != "not measured" for c in result.claims)
    assert len(result.figures) == 2
    for fig in result.figures:
        assert (out / fig["path"]).stat().st_size > 0
    ranking = result.tables["ranking"]
    assert {r["denoiser"] for r in ranking} == {"exact", "learned"}
    assert all(r["nfe"] <= 10 for r in ranking)


def test_2d_exact_density_rows(first_run):
    """The 2-D rows (DDIM-type, exact-density quadrature TV) exist for every eps, resolve their
    masses, and the eps-part grows with eps."""
    _, result = first_run
    rows = result.tables["tv_2d"]
    assert [r["eps"] for r in rows] == sorted(r["eps"] for r in rows) and rows[0]["eps"] == 0.0
    assert all(r["mass_error"] < 1e-3 for r in rows)
    parts = [r["eps_part"] for r in rows[1:]]
    assert all(b > a for a, b in zip(parts, parts[1:])), parts
    claim = next(c for c in result.claims if c.statement.startswith("d = 2:"))
    assert claim.verdict in ("reproduced", "pre-asymptotic", "not reproduced")
