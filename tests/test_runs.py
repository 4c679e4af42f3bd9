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

    from rom_pipeline.config import validate_parameters
    from rom_pipeline.datasets.runs import SimulationRunsDataset
    from rom_pipeline.execution.run_folder import RunFolder, RunFolderError, SimulationPlan
    from rom_pipeline.execution.runs import plan_runs
    from tests.conftest import _load_env, with_overrides

    params = with_overrides(_load_env("test"), **{"train_ic.uniform.n_runs": 0, "train_ic.two_clusters.enabled": False,
                                                  "train_ic.ring.enabled": False})
    plan = SimulationPlan({t.run_id: t for t in plan_runs(validate_parameters(params), "train")})
    path = tmp_path / "train"
    RunFolder(path).simulate(plan)
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
    RunFolder(path).simulate(fewer)
    assert (path / "my_notes" / "a.txt").read_text() == "keep me"
    assert (path / "train_007" / "results.csv").read_text() == "keep me too"
    assert not orphan.exists()  # own temporary folder: cleaned up
    assert not (path / "train_001").exists()  # own stale run: removed
    assert SimulationRunsDataset(path=str(path)).load().run_ids == ["train_000"]  # user folders never loaded

    # a foreign folder where a planned run must go: refused before anything is deleted or simulated
    (path / "train_001").mkdir()
    (path / "train_001" / "thesis.tex").write_text("precious")
    before = sorted(str(p) for p in path.rglob("*"))
    with pytest.raises(RunFolderError, match=r"train_001: in the way of planned runs but not written by this pipeline"):
        RunFolder(path).simulate(plan)
    assert sorted(str(p) for p in path.rglob("*")) == before


# --------------------------------------------------------------------------- datasets only read and write
class _TinyRun:
    """A plan task producing a 3-frame run without physics (fast), with a fixed fingerprint."""

    def __init__(self, run_id: str):
        self.run_id, self.fingerprint = run_id, f"fp-{run_id}"

    def __call__(self) -> dict:
        times = np.arange(3) * 0.1
        return {
            "particles": {"times": times, "positions": np.zeros((3, 4, 2)), "velocities": np.ones((3, 4, 2))},
            "density": {"density": np.full((3, 5, 6), 2.0), "times": times, "x": np.arange(6.0), "y": np.arange(5.0)},
            "meta": {"run_id": self.run_id, "family": "gaussian", "fingerprint": self.fingerprint},
        }


def _listing(path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in sorted(path.rglob("*"))}


def test_runs_dataset_records_the_node_result_without_writing_and_refuses_what_is_not_on_disk(tmp_path):
    from kedro.io import DatasetError

    from rom_pipeline.datasets.runs import RunCollection, RunFolderDataset, SimulationRunsDataset
    from rom_pipeline.execution.run_folder import RunFolder, SimulationPlan

    path = tmp_path / "train"
    handle = RunFolderDataset(path=str(path))
    assert handle.exists() and not path.exists()  # an empty start is valid: every run is simulated
    folder = handle.load()
    assert isinstance(folder, RunFolder) and folder.path == path
    run_ids = folder.simulate(SimulationPlan({r: _TinyRun(r) for r in ("train_000", "train_001")}))
    assert run_ids == ["train_000", "train_001"]

    dataset = SimulationRunsDataset(path=str(path))
    before = _listing(path)
    dataset.save(RunCollection(path, run_ids))  # records: nothing written, nothing computed
    assert _listing(path) == before
    runs = dataset.load()
    assert runs.run_ids == run_ids
    np.testing.assert_array_equal(runs.density("train_001")["density"], np.full((3, 5, 6), 2.0))

    with pytest.raises(DatasetError, match=r"runs \['train_002'\] are not complete on disk"):
        dataset.save(RunCollection(path, [*run_ids, "train_002"]))
    with pytest.raises(DatasetError, match="cannot be recorded as"):
        dataset.save(RunCollection(tmp_path / "elsewhere", run_ids))
    with pytest.raises(DatasetError, match="records a RunCollection .* got SimulationPlan"):
        dataset.save(SimulationPlan({"train_002": _TinyRun("train_002")}))  # the old lazy plan
    with pytest.raises(DatasetError, match="written by the simulation node"):
        handle.save(folder)
    assert _listing(path) == before and not (path / "train_002").exists()


def test_animation_dataset_writes_exactly_the_rendered_gif(tmp_path):
    from kedro.io import DatasetError

    from rom_pipeline.datasets import ComparisonAnimationDataset
    from rom_pipeline.evaluation.plots import comparison_animation_gif, write_comparison_animation

    rng = np.random.default_rng(0)
    truth = rng.random((6, 5, 4))
    gif = comparison_animation_gif(truth, {"MVAR": 0.9 * truth}, np.arange(6.0), max_frames=4, title="t")
    assert gif[:6] == b"GIF89a"
    dataset = ComparisonAnimationDataset(path=str(tmp_path / "animations"))
    dataset.save({"test_000_gaussian": gif})
    assert dataset.load() == [tmp_path / "animations" / "test_000_gaussian.gif"]
    assert dataset.load()[0].read_bytes() == gif
    # the oracle: the stand-alone writer renders and writes the very same file
    direct = write_comparison_animation(truth, {"MVAR": 0.9 * truth}, np.arange(6.0), tmp_path / "direct.gif",
                                        max_frames=4, title="t")
    assert direct.read_bytes() == gif
    # the old interface (arrays to render inside save) is refused by name, before anything is written
    with pytest.raises(DatasetError, match=r"\['test_001_ring'\] are not bytes"):
        dataset.save({"test_001_ring": {"truth": truth, "predictions": {"MVAR": truth}, "times": np.arange(6.0)}})
    assert [p.name for p in (tmp_path / "animations").iterdir()] == ["test_000_gaussian.gif"]
