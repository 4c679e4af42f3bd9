"""Run planning and one run end to end (the glue between parameters and physics)."""
import numpy as np
import pytest

from rom_pipeline.config import validate_parameters
from rom_pipeline.execution.runs import plan_runs
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


# --------------------------------------------------------------------------- ownership
def test_rerun_deletes_only_its_own_folders_and_refuses_a_foreign_one_in_the_way(tmp_path):
    import json as _json

    from kedro.io import DatasetError

    from rom_pipeline.config import validate_parameters
    from rom_pipeline.datasets.runs import SimulationPlan, SimulationRunsDataset
    from rom_pipeline.execution.runs import plan_runs
    from tests.conftest import _load_env, with_overrides

    params = with_overrides(_load_env("test"), **{"train_ic.uniform.n_runs": 0, "train_ic.two_clusters.enabled": False,
                                                  "train_ic.ring.enabled": False})
    plan = SimulationPlan({t.run_id: t for t in plan_runs(validate_parameters(params), "train")})
    path = tmp_path / "train"
    SimulationRunsDataset(path=str(path)).save(plan)
    assert sorted(p.name for p in path.iterdir() if p.is_dir()) == ["train_000", "train_001"]
    timings = (path / "timings.csv").read_text().splitlines()
    assert timings[0] == "run_id,seconds" and len(timings) == 3
    assert "seconds" not in _json.loads((path / "train_000" / "meta.json").read_text())

    # a user's folders: one with another name, one named like a stale run but holding user files
    (path / "my_notes").mkdir()
    (path / "my_notes" / "a.txt").write_text("keep me")
    (path / "train_007").mkdir()
    (path / "train_007" / "results.csv").write_text("keep me too")
    orphan = path / "train_001.partial-0badc0de"
    orphan.mkdir()
    (orphan / "particles.npz").write_bytes(b"half")
    fewer = SimulationPlan({k: v for k, v in plan.items() if k == "train_000"})
    SimulationRunsDataset(path=str(path)).save(fewer)
    assert (path / "my_notes" / "a.txt").read_text() == "keep me"
    assert (path / "train_007" / "results.csv").read_text() == "keep me too"
    assert not orphan.exists()  # own temporary folder: cleaned up
    assert not (path / "train_001").exists()  # own stale run: removed
    assert SimulationRunsDataset(path=str(path)).load().run_ids == ["train_000"]  # user folders never loaded

    # a foreign folder where a planned run must go: refused before anything is deleted or simulated
    (path / "train_001").mkdir()
    (path / "train_001" / "thesis.tex").write_text("precious")
    before = sorted(str(p) for p in path.rglob("*"))
    with pytest.raises(DatasetError, match=r"train_001: in the way of planned runs but not written by this pipeline"):
        SimulationRunsDataset(path=str(path)).save(plan)
    assert sorted(str(p) for p in path.rglob("*")) == before
