"""Simulation runs: from validated parameters to a plan of seeded runs, and one run to arrays.

A :class:`RunTask` is a small picklable callable (it can travel to a Dask worker) that simulates
one run and computes its density movie. Its ``fingerprint`` hashes everything that determines the
output, so a stored run is reused only when nothing it depends on has changed.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rom_pipeline.config import ExperimentConfig

FORMAT_VERSION = 1  # bump when the stored run layout or the physics changes


@dataclass(frozen=True)
class RunTask:
    """One simulation run.

    Attributes:
        run_id: ``train_000`` / ``test_003``.
        family: IC family (``uniform``, ``gaussian``, ``ring``, ``two_clusters``).
        ic_params: the family's parameters for this run.
        seed: the run's own seed (train k -> sim.seed_base + k, test k -> test_sim.seed_base + k).
        T: horizon [s].
        physics: every simulation/density setting (plain JSON-able dict).
    """

    run_id: str
    family: str
    ic_params: dict[str, float]
    seed: int
    T: float
    physics: dict[str, Any] = field(repr=False)

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(
            {"v": FORMAT_VERSION, **asdict(self)}, sort_keys=True, default=float
        ).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def metadata(self) -> dict[str, Any]:
        p = self.physics
        return {
            "run_id": self.run_id,
            "family": self.family,
            "seed": self.seed,
            "T": self.T,
            "N": p["N"],
            "dt": p["dt"],
            "fingerprint": self.fingerprint,
            **{f"ic_{k}": v for k, v in self.ic_params.items()},
        }

    def __call__(self) -> dict[str, Any]:
        return simulate_run(self)


def physics_settings(cfg: ExperimentConfig) -> dict[str, Any]:
    """The JSON-able subset of the configuration that determines a run's arrays."""
    f = cfg.forces.params
    return {
        "N": cfg.sim.N,
        "dt": cfg.sim.dt,
        "Lx": cfg.sim.Lx,
        "Ly": cfg.sim.Ly,
        "bc": cfg.sim.bc,
        "save_every": cfg.sim.save_every,
        "model": cfg.model.model_dump(),
        "params": cfg.params.model_dump(),
        "noise": cfg.noise.model_dump(),
        "forces": cfg.forces.enabled and {"Ca": f.Ca, "Cr": f.Cr, "la": f.la, "lr": f.lr,
                                          "mu_t": f.mu_t, "rcut_factor": f.rcut_factor},
        "alignment": cfg.alignment.model_dump(),
        "density": cfg.density.model_dump(),
    }


def plan_runs(cfg: ExperimentConfig, split: str) -> list[RunTask]:
    """All runs of ``split`` (``train`` or ``test``): each family's grid × samples, in a fixed order.

    Run k of the split gets seed ``seed_base + k``.
    """
    if split == "train":
        ic, T, seed_base = cfg.train_ic, cfg.sim.T, cfg.sim.seed_base
    elif split == "test":
        ic, T, seed_base = cfg.test_ic, cfg.test_sim.T, cfg.test_sim.seed_base
    else:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    physics = physics_settings(cfg)
    tasks: list[RunTask] = []
    for family, fam in ic.families().items():
        if not fam.enabled:
            continue
        for conf in fam.configurations(f"{split}_ic.{family}"):
            for _ in range(fam.n_samples_per_config):
                k = len(tasks)
                tasks.append(
                    RunTask(
                        run_id=f"{split}_{k:03d}",
                        family=family,
                        ic_params={k_: float(v) for k_, v in conf.items()},
                        seed=seed_base + k,
                        T=T,
                        physics=physics,
                    )
                )
    return tasks


def simulate_run(task: RunTask) -> dict[str, Any]:
    """Simulate one run and compute its KDE density movie.

    Returns:
        ``{"particles": {times (T,), positions (T,N,2), velocities (T,N,2)},
        "density": {density (T,ny,nx) float32 number density, times (T,), x (nx,), y (ny,)},
        "meta": {... , "ic_params", "physics"}, "timing": {"seconds": wall time}}``
    """
    from rom_pipeline.physics.density import density_grid, kde_density
    from rom_pipeline.physics.dorsogna import simulate_dorsogna
    from rom_pipeline.physics.initial_conditions import sample_headings, sample_positions
    from rom_pipeline.physics.vicsek import simulate_vicsek

    p = task.physics
    start = time.perf_counter()
    rng = np.random.default_rng(task.seed)
    x0 = sample_positions(task.family, p["N"], p["Lx"], p["Ly"], rng, **task.ic_params)
    theta0 = sample_headings(p["N"], rng)
    n_steps = int(round(task.T / p["dt"]))
    common = dict(
        n_steps=n_steps, dt=p["dt"], Lx=p["Lx"], Ly=p["Ly"], boundary=p["bc"], rng=rng,
        save_every=p["save_every"],
    )
    model = p["model"]
    if model["type"] == "discrete":
        traj = simulate_vicsek(
            x0, theta0, v0=model["speed"], R=p["params"]["R"],
            noise_kind=p["noise"]["kind"], eta=p["noise"]["eta"],
            match_variance=p["noise"]["match_variance"], speed_mode=model["speed_mode"],
            forces=p["forces"] or None, **common,
        )
    elif model["type"] == "dorsogna":
        forces = p["forces"] or {"Ca": 0.0, "Cr": 0.0, "la": 1.0, "lr": 1.0, "rcut_factor": 3.0}
        traj = simulate_dorsogna(
            x0, theta0, alpha=p["params"]["alpha"], beta=p["params"]["beta"],
            Ca=forces["Ca"], Cr=forces["Cr"], la=forces["la"], lr=forces["lr"],
            rcut_factor=forces["rcut_factor"], integrator=model["integrator"],
            alignment_strength=p["alignment"]["strength"] if p["alignment"]["enabled"] else 0.0,
            R=p["params"]["R"], noise_eta=p["noise"]["eta"], **common,
        )
    else:
        raise ValueError(f"model.type = {model['type']!r} is unknown: use 'discrete' or 'dorsogna'")
    d = p["density"]
    rho = kde_density(traj["positions"], p["Lx"], p["Ly"], d["nx"], d["ny"], d["bandwidth"], p["bc"])
    xc, yc = density_grid(p["Lx"], p["Ly"], d["nx"], d["ny"])
    meta = {**task.metadata(), "ic_params": task.ic_params, "physics": p}
    return {
        "particles": {
            "times": traj["times"],
            "positions": traj["positions"].astype(np.float32),
            "velocities": traj["velocities"].astype(np.float32),
        },
        "density": {
            "density": rho.astype(np.float32),
            "times": traj["times"],
            "x": xc,
            "y": yc,
        },
        "meta": meta,
        # wall time travels apart from the run's files: identical work gives identical files
        "timing": {"seconds": round(time.perf_counter() - start, 4)},
    }
