"""Lineage: every stored artifact records what it was built from, and every stage checks it.

An artifact's *record* is a plain JSON dict::

    {"artifact": "latent_dataset",
     "params":   {"latent_dataset.lag (shared)": 3},                       # the keys its stage reads
     "inputs":   {"train_latent": "9f2c..."},                   # fingerprints of its direct inputs
     "upstream": {"train_latent": {...params}, "pod_basis": {...}, "train.runs": {...}}}

and its *fingerprint* is the SHA-256 of that JSON (16 hex digits). The record depends only on the
parameters and on the records of the inputs, so it is known before the stage runs: the session
computes the expected record of every artifact from the current parameters (:func:`expected_records`),
stamps it on the artifacts a run writes (stored inside the ``.npz`` / torch payload under
``_lineage``), and compares it with the record stored in every artifact the run only reads
(:func:`check_inputs`). A run collection's fingerprint hashes its runs' own fingerprints
(:attr:`rom_pipeline.execution.runs.RunTask.fingerprint`), which already cover physics, IC and seed.

On a mismatch the check names the stale artifact, what differs (key: stored -> current) and the
command that rebuilds it. Artifacts written before lineage existed are reported in a warning and
used as they are.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from rom_pipeline.config import ExperimentConfig
from rom_pipeline.registry import FORECASTERS
from rom_pipeline.execution.runs import physics_settings, plan_runs

logger = logging.getLogger(__name__)

RUNS = ("train.runs", "test.runs")
# artifact -> (the stage that writes it, the artifacts it is built from)
ARTIFACTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "pod_basis": ("pod", ("train.runs",)),
    "train_latent": ("pod", ("train.runs", "pod_basis")),
    "latent_dataset": ("latent_dataset", ("train_latent",)),
    # each registered forecaster's model and predictions (rom_pipeline.registry)
    **{f"{m}.model": (m, ("latent_dataset",)) for m in FORECASTERS},
    **{f"{m}.predictions": (m, (f"{m}.model", "pod_basis", "test.runs")) for m in FORECASTERS},
}
# Artifacts whose every float must be finite (predictions hold NaN for a diverged rollout).
FINITE = ("pod_basis", "train_latent", "latent_dataset")
SHARED_STAGES = ("simulation", "pod", "latent_dataset")


class LineageError(RuntimeError):
    """An input artifact does not match the current parameters or the other inputs."""


def fingerprint(obj: Any) -> str:
    """SHA-256 (16 hex digits) of ``obj`` as canonical JSON."""
    blob = json.dumps(obj, sort_keys=True, default=float, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = list(value) if isinstance(value, tuple) else value


def _flat_forces(forces: dict[str, Any] | bool, out: dict[str, Any]) -> None:
    """``physics["forces"]`` is the Morse parameters, or ``False`` when forces are disabled."""
    if forces:
        _flat("forces.params", forces, out)
    else:
        out["forces.enabled"] = False


def runs_parameters(cfg: ExperimentConfig, split: str) -> dict[str, Any]:
    """The parameters a split's runs are simulated from, as dotted keys (for naming differences)."""
    p = physics_settings(cfg)
    out: dict[str, Any] = {}
    for key in ("N", "dt", "Lx", "Ly", "bc", "save_every"):
        out[f"sim.{key}"] = p[key]
    for block in ("model", "params", "noise", "alignment", "density"):
        _flat(block, p[block], out)
    _flat_forces(p["forces"], out)
    ic = cfg.train_ic if split == "train" else cfg.test_ic
    if split == "train":
        out["sim.T"], out["sim.seed_base"] = cfg.sim.T, cfg.sim.seed_base
    else:
        out["test_sim.T"], out["test_sim.seed_base"] = cfg.test_sim.T, cfg.test_sim.seed_base
    for name, family in ic.families().items():
        if family.enabled:
            _flat(f"{split}_ic.{name}", family.model_dump(), out)
    return out


def stage_parameters(name: str, cfg: ExperimentConfig) -> dict[str, Any]:
    """The parameters (dotted keys) the stage that writes artifact ``name`` reads."""
    rom = cfg.rom
    if name in RUNS:
        return runs_parameters(cfg, name.split(".")[0])
    if name == "pod_basis":
        keys = ("subsample", "fixed_modes", "pod_energy", "density_transform", "density_transform_eps",
                "shift_align", "shift_align_ref")
        return {f"rom.{k}": getattr(rom, k) for k in keys}
    if name == "train_latent":
        return {"rom.subsample": rom.subsample}
    if name == "latent_dataset":
        return {"latent_dataset.lag (shared: latent_dataset.lag, else mvar.lag)": cfg.shared_lag()}
    if name.endswith(".model") and name.split(".")[0] in FORECASTERS:
        model = name.split(".")[0]
        # JSON mode: a tuple default (opinf's penalty grids) reads as the list the stored record holds
        block = getattr(cfg, model).model_dump(mode="json", exclude={"enabled", "device"})
        return {f"{model}.{k}": v for k, v in block.items()}
    if name.endswith(".predictions"):
        out: dict[str, Any] = {}
        _flat("eval", cfg.eval.model_dump(exclude={"snapshot_times", "animation_max_frames"}), out)
        out["eval.forecast_start (default sim.T)"] = cfg.forecast_start
        return out
    raise KeyError(f"no lineage is defined for {name!r}")


def runs_fingerprint(run_fingerprints: dict[str, str]) -> str:
    """Fingerprint of a run collection: its ``{run_id: run fingerprint}``."""
    return fingerprint(dict(sorted(run_fingerprints.items())))


def expected_records(cfg: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """The record every artifact must carry under ``cfg`` (runs: ``{"runs": {id: fp}}``)."""
    records: dict[str, dict[str, Any]] = {}
    prints: dict[str, str] = {}
    for name in RUNS:
        runs = {t.run_id: t.fingerprint for t in plan_runs(cfg, name.split(".")[0])}
        records[name] = {"artifact": name, "params": stage_parameters(name, cfg), "runs": runs}
        prints[name] = runs_fingerprint(runs)
    for name, (_, inputs) in ARTIFACTS.items():  # ordered: inputs come first
        upstream: dict[str, Any] = {}
        for source in inputs:
            upstream.update(records[source].get("upstream", {}))
            upstream[source] = records[source]["params"]
        record = {
            "artifact": name,
            "params": stage_parameters(name, cfg),
            "inputs": {source: prints[source] for source in inputs},
            "upstream": dict(sorted(upstream.items())),
        }
        records[name], prints[name] = record, fingerprint(record)
    return records


def rebuild_command(name: str, env: str | None) -> str:
    """The ``kedro run`` that rebuilds artifact ``name`` and the shared artifacts after it."""
    stage = "simulation" if name in RUNS else ARTIFACTS[name][0]
    stages = list(SHARED_STAGES[SHARED_STAGES.index(stage):]) if stage in SHARED_STAGES else [stage]
    env_flag = f" --env {env}" if env else ""
    return f"`kedro run --pipelines={','.join(stages)}{env_flag}`"


def _differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(stored) | set(current)):
        old, new = stored.get(key, _ABSENT), current.get(key, _ABSENT)
        if old != new:
            out.append(f"{key}: {_show(old)} -> {_show(new)}")
    return out


_ABSENT = object()


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else repr(value)


ORDER = (*RUNS, *ARTIFACTS)


def compare_record(name: str, stored: dict[str, Any], expected: dict[str, Any]) -> tuple[list[str], str]:
    """What differs between the stored and the expected record of ``name`` (empty: up to date),
    and the earliest artifact of its lineage that differs (where a rebuild must start)."""
    problems = _differences(stored.get("params", {}), expected["params"])
    root = name if problems else None
    stored_up = stored.get("upstream", {})
    for source, params in sorted(expected.get("upstream", {}).items(), key=lambda kv: ORDER.index(kv[0])):
        diffs = _differences(stored_up.get(source, {}), params)
        if diffs:
            problems.append(f"upstream {source}: " + ", ".join(diffs))
            root = source if root is None or ORDER.index(source) < ORDER.index(root) else root
    if not problems and stored.get("inputs") != expected.get("inputs"):
        changed = sorted(k for k in expected["inputs"] if stored.get("inputs", {}).get(k) != expected["inputs"][k])
        problems.append(
            "built from other versions of " + ", ".join(changed)
            + " (same parameters, different inputs: e.g. runs simulated with other physics, or an input rebuilt since)"
        )
        root = min(changed, key=ORDER.index)
    return problems, root or name


def compare_runs(name: str, on_disk: dict[str, dict[str, Any]], expected: dict[str, Any]) -> list[str]:
    """What differs between the runs on disk (``{run_id: meta}``) and the runs the plan needs."""
    planned: dict[str, str] = expected["runs"]
    problems = []
    missing = sorted(set(planned) - set(on_disk))
    extra = sorted(set(on_disk) - set(planned))
    if missing:
        problems.append(f"runs {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} are missing "
                        f"({len(missing)} of {len(planned)} planned)")
    if extra:
        problems.append(f"runs {', '.join(extra[:5])} are not in the current plan")
    changed = sorted(r for r in set(planned) & set(on_disk) if on_disk[r].get("fingerprint") != planned[r])
    if changed:
        first = on_disk[changed[0]]
        detail = ""
        if isinstance(first.get("physics"), dict):
            stored = runs_parameters_from_meta(first, name.split(".")[0])
            current = {k: v for k, v in expected["params"].items() if k in stored}
            diffs = _differences(stored, current)
            detail = f" ({', '.join(diffs)})" if diffs else ""
        problems.append(
            f"{len(changed)} of {len(planned)} runs were simulated with other parameters"
            f"{detail or ' (their fingerprints differ from the current plan)'}"
        )
    return problems


def runs_parameters_from_meta(meta: dict[str, Any], split: str) -> dict[str, Any]:
    """The dotted physics keys recorded in a run's ``meta.json`` (see ``runs.simulate_run``)."""
    p = meta["physics"]
    out: dict[str, Any] = {}
    for key in ("N", "dt", "Lx", "Ly", "bc", "save_every"):
        if key in p:
            out[f"sim.{key}"] = p[key]
    for block in ("model", "params", "noise", "alignment", "density"):
        if block in p:
            _flat(block, p[block], out)
    if "forces" in p:
        _flat_forces(p["forces"], out)
    out["sim.T" if split == "train" else "test_sim.T"] = meta.get("T")
    return out


def non_finite_arrays(arrays: dict[str, Any]) -> list[str]:
    """Keys of float arrays holding NaN or inf."""
    bad = []
    for key, value in arrays.items():
        a = np.asarray(value) if not hasattr(value, "numpy") else value.detach().cpu().numpy()
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            bad.append(key)
    return bad


def check_inputs(pipeline_inputs: set[str], catalog: Any, cfg: ExperimentConfig, env: str | None) -> None:
    """Compare every tracked artifact the run only reads with its expected record.

    Raises:
        LineageError: naming each stale, non-finite or unreadable input, what differs and the
            command that rebuilds it.
    """
    expected = expected_records(cfg)
    problems: list[str] = []
    for name in sorted(pipeline_inputs):
        if name not in expected or name not in _catalog_names(catalog, name):
            continue
        dataset = catalog[name]
        where = _describe_location(dataset)
        root = name
        if name in RUNS:
            runs = dataset.load()  # refuses incomplete or corrupt runs by file name
            diffs = compare_runs(name, {r: runs[r] for r in runs}, expected[name])
        else:
            stored = dataset.read_lineage() if hasattr(dataset, "read_lineage") else None
            root = name
            if stored is None:
                logger.warning("%s (%s) records no lineage (written by an older version): it cannot be "
                               "checked against the current parameters; rebuild it with %s", name, where,
                               rebuild_command(name, env))
                diffs = []
            else:
                diffs, root = compare_record(name, stored, expected[name])
            if not diffs and name in FINITE:
                bad = non_finite_arrays(dataset.load())
                if bad:
                    diffs = [f"arrays {bad} hold NaN or inf"]
        if diffs:
            problems.append(f"- {name} ({where}) is stale: {'; '.join(diffs)}. Rebuild it with "
                            f"{rebuild_command(root, env)}, then rerun this command.")
    if problems:
        raise LineageError("Inputs do not match the current parameters:\n" + "\n".join(problems))


def _catalog_names(catalog: Any, name: str) -> set[str]:
    try:
        catalog[name]
    except Exception:  # not in this project's catalog (e.g. a bare test catalog)
        return set()
    return {name}


def _describe_location(dataset: Any) -> str:
    path = getattr(dataset, "_path", None)
    if path is not None:
        return str(path)
    try:
        load_path = dataset._get_load_path()
    except Exception:
        load_path = getattr(dataset, "_filepath", "?")
    return str(Path(str(load_path)))
