"""Run planning and one run end to end (the glue between parameters and physics)."""
import numpy as np
import pytest

from rom_pipeline.config import validate_parameters
from rom_pipeline.runs import plan_runs
from tests.conftest import with_overrides


def test_plan_seeds_ids_and_counts(test_params):
    cfg = validate_parameters(test_params)
    train, test = plan_runs(cfg, "train"), plan_runs(cfg, "test")
    assert [t.run_id for t in train] == [f"train_{k:03d}" for k in range(len(train))]
    assert [t.seed for t in train] == list(range(len(train)))
    assert [t.seed for t in test] == [1000 + k for k in range(len(test))]
    assert len(train) == cfg.train_ic.run_count("train_ic") and len(test) == 2
    assert {t.T for t in test} == {cfg.test_sim.T}
    # fingerprints change with anything that changes the arrays, and only then
    other = plan_runs(validate_parameters(with_overrides(test_params, **{"noise.eta": 0.2})), "train")
    assert all(a.fingerprint != b.fingerprint for a, b in zip(train, other))
    assert [t.fingerprint for t in plan_runs(cfg, "train")] == [t.fingerprint for t in train]


@pytest.mark.parametrize("model_type,dt", [("discrete", 0.05), ("dorsogna", 0.02)])
def test_one_run_conserves_mass_and_is_reproducible(test_params, model_type, dt):
    params = with_overrides(test_params, **{"model.type": model_type, "sim.dt": dt})
    cfg = validate_parameters(params)
    task = plan_runs(cfg, "train")[0]
    out, again = task(), task()
    rho = out["density"]["density"].astype(np.float64)
    cell = (cfg.sim.Lx / cfg.density.nx) * (cfg.sim.Ly / cfg.density.ny)
    assert rho.shape == (cfg.sim.n_steps + 1, cfg.density.ny, cfg.density.nx)
    np.testing.assert_allclose(rho.sum(axis=(1, 2)) * cell, cfg.sim.N, rtol=1e-5)  # float32 storage
    np.testing.assert_array_equal(out["particles"]["positions"], again["particles"]["positions"])
    assert out["meta"]["seed"] == 0 and out["meta"]["fingerprint"] == task.fingerprint
