"""A catalogue of regimes in one command: run many Kedro environments as independent jobs, then
tabulate them side by side.

    python -m rom_pipeline.cli.catalogue run gas blackhole --workers 2
    python -m rom_pipeline.cli.catalogue run --envs thesis --workers 2          # the nine regimes
    python -m rom_pipeline.cli.catalogue run --envs thesis --cluster slurm      # one SLURM job each
    python -m rom_pipeline.cli.catalogue table --envs thesis                    # what is done, no run

Each regime is one job: a subprocess ``kedro run --env <regime>`` (its own Kedro session, its
own log file ``<data_root>/catalogue/logs/<regime>.log``). Jobs go through
:func:`rom_pipeline.execution.parallel.map_as_completed`: a Dask ``LocalCluster`` of ``--workers``
single-threaded workers by default (one regime per worker at a time), or a dask-jobqueue
``SLURMCluster`` with one job per regime (``--cluster slurm``, sized by the ``execution.slurm``
block of ``--slurm-env``, default ``conf/hpc``).

Resuming: a regime is skipped when its ``summary.json`` scores every enabled model and the
``config_used.yaml`` written beside it has the fingerprint of the regime's current parameters
(:func:`config_fingerprint`; the ``execution`` block is left out, since where a run executes
never changes its results). Within a regime that is run, the simulation stage resumes finished
runs by itself.

The table (``<data_root>/catalogue/<name>.md`` and ``.csv``, and the Markdown on stdout; logs go
to stderr) has one row per regime: status, each model's pooled density R² per shift mode (the
``r2_pooled_mean`` of ``summary.json``), the persistence and climatology baselines where
``summary.json`` has them (``–`` otherwise), the research code's reference R²
(:data:`REFERENCE_R2`) and the wall time of the job that produced the regime's results. A failed
regime is listed with its log path, and the command exits with status 1.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from rom_pipeline.execution.parallel import ExecutionConfig, map_as_completed

logger = logging.getLogger(__name__)

PROJECT_PATH = Path(__file__).resolve().parents[3]
# The nine regimes of the thesis table (reference_results.md); conf/thesis/generate.py writes
# their environments, and pure_vicsek_vs, which has no reference: add it by name.
THESIS_REGIMES = (
    "gas", "blackhole", "supernova", "crystal", "pure_vicsek",
    "gas_vs", "blackhole_vs", "supernova_vs", "crystal_vs",
)
ENV_GROUPS: dict[str, tuple[str, ...]] = {"thesis": THESIS_REGIMES}
# Mean test forecast R² of the research code, true shifts for every forecast frame
# (/work/shared/docs/reference_results.md, headline table).
REFERENCE_R2: dict[str, dict[str, float]] = {
    "gas": {"MVAR": 0.996, "LSTM": 0.996},
    "blackhole": {"MVAR": 0.995, "LSTM": 0.992},
    "supernova": {"MVAR": 0.683, "LSTM": 0.508},
    "crystal": {"MVAR": 0.996, "LSTM": 0.585},
    "pure_vicsek": {"MVAR": 0.654, "LSTM": 0.229},
    "gas_vs": {"MVAR": 0.558, "LSTM": 0.110},
    "blackhole_vs": {"MVAR": 0.704, "LSTM": -0.214},
    "supernova_vs": {"MVAR": 0.244, "LSTM": 0.163},
    "crystal_vs": {"MVAR": 0.292, "LSTM": -0.779},
}
BASELINES = ("persistence", "climatology")
RECORD_NAME = "catalogue_run.json"  # beside summary.json: fingerprint and wall time of the job
MISSING = "–"


# --------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class Regime:
    """One environment of the catalogue, resolved before any job starts.

    Attributes:
        env: Kedro environment name (a folder of ``conf_source``).
        fingerprint: :func:`config_fingerprint` of its current parameters.
        models: enabled model names as ``summary.json`` spells them (``MVAR``, ``LSTM``).
        summary_path: where its ``summary.json`` is written (the catalog's ``summary`` entry).
        config_used_path: the ``config_used.yaml`` written with it.
    """

    env: str
    fingerprint: str
    models: tuple[str, ...]
    summary_path: Path
    config_used_path: Path

    @property
    def record_path(self) -> Path:
        return self.summary_path.parent / RECORD_NAME


def config_fingerprint(parameters: Mapping[str, Any]) -> str:
    """SHA-256 (16 hex digits) of the validated parameters without ``execution``.

    Validation fills every default, so two spellings of the same configuration (a key left to
    its default or written out) share a fingerprint, and ``config_used.yaml`` (the validated
    parameters a run dumped) has the fingerprint of the parameters that produced it.
    """
    from rom_pipeline.config import validate_parameters

    dumped = validate_parameters(dict(parameters)).model_dump(mode="json")
    dumped.pop("execution", None)
    text = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _resolve(path: str, project: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else project / p


def _loader(env: str, conf_source: Path, **extra: Any):
    from kedro.config import OmegaConfigLoader

    from rom_pipeline.settings import CONFIG_LOADER_ARGS

    if not (conf_source / env).is_dir():
        known = sorted(p.name for p in conf_source.iterdir()
                       if p.is_dir() and p.name != "base" and any(p.glob("*.yml")))
        raise ValueError(
            f"environment {env!r}: no folder {conf_source / env}; pick one of {', '.join(known)} "
            f"or a group ({', '.join(f'--envs {g}' for g in ENV_GROUPS)})"
        )
    return OmegaConfigLoader(conf_source=str(conf_source), **{**CONFIG_LOADER_ARGS, "default_run_env": env}, **extra)


def load_parameters(env: str, conf_source: Path) -> dict[str, Any]:
    """The parameters ``kedro run --env <env>`` gets (``env`` merged over ``conf/base``)."""
    return dict(_loader(env, conf_source)["parameters"])


def plan_regime(env: str, conf_source: Path, project: Path = PROJECT_PATH) -> Regime:
    """Load and validate ``env``'s configuration (merged over ``conf/base``) into a :class:`Regime`.

    Raises:
        ValueError: ``env`` has no folder in ``conf_source``.
        ConfigError: its parameters are invalid (every bad key, its value and the fix).
    """
    from rom_pipeline.config import validate_parameters

    loader = _loader(env, conf_source)
    parameters = dict(loader["parameters"])
    cfg = validate_parameters(parameters)
    catalog = loader["catalog"]
    return Regime(
        env=env,
        fingerprint=config_fingerprint(parameters),
        models=tuple(name.upper() for name in cfg.enabled_models()),
        summary_path=_resolve(catalog["summary"]["filepath"], project),
        config_used_path=_resolve(catalog["config_used"]["filepath"], project),
    )


def is_finished(regime: Regime) -> bool:
    """True when ``summary.json`` scores every enabled model and ``config_used.yaml`` beside it has
    the regime's current fingerprint."""
    try:
        summary = json.loads(regime.summary_path.read_text())
        used = yaml.safe_load(regime.config_used_path.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return False
    scored = {str(m).upper() for m, block in (summary.get("models") or {}).items()
              if (block or {}).get("r2_pooled_mean")}
    if not set(regime.models) <= scored:
        return False
    try:
        return config_fingerprint(used or {}) == regime.fingerprint
    except Exception:  # a config_used.yaml from an older schema: not this configuration
        return False


def expand_envs(envs: Sequence[str], groups: Sequence[str] = ()) -> list[str]:
    """Named environments followed by every environment of each group, without repeats.

    Raises:
        ValueError: an unknown group, or no environment at all.
    """
    out = list(envs)
    for group in groups:
        if group not in ENV_GROUPS:
            raise ValueError(f"--envs {group!r}: unknown group; use one of {', '.join(ENV_GROUPS)}")
        out.extend(ENV_GROUPS[group])
    out = list(dict.fromkeys(out))
    if not out:
        raise ValueError(
            "no environments given: name them (e.g. `run gas blackhole`) or use --envs thesis"
        )
    return out


# --------------------------------------------------------------------------- jobs
@dataclass(frozen=True)
class RegimeJob:
    """``kedro run --env <env>`` in ``project``, output to ``log_path``. Picklable, so a Dask
    worker (local or a SLURM job) can run it; the regime's own ``execution`` block decides how
    its stages run inside the job."""

    env: str
    project: str
    conf_source: str
    log_path: str
    kedro_args: tuple[str, ...] = ()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "kedro", "run", "--env", self.env,
                "--conf-source", self.conf_source, *self.kedro_args]


def run_job(job: RegimeJob) -> dict[str, Any]:
    """Run ``job``; ``{"env", "returncode", "wall_seconds", "log"}``."""
    log = Path(job.log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    # COLUMNS: Kedro's rich log lines are not wrapped to 80 characters in the log file.
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg", "COLUMNS": "160"}
    start = time.perf_counter()
    with log.open("w") as stream:
        stream.write(f"$ {' '.join(job.command())}\n")
        stream.flush()
        proc = subprocess.run(job.command(), cwd=job.project, env=env, stdout=stream,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return {"env": job.env, "returncode": proc.returncode,
            "wall_seconds": time.perf_counter() - start, "log": str(log)}


def catalogue_execution(n_jobs: int, workers: int | None, cluster: str,
                        slurm: Mapping[str, Any] | None = None) -> ExecutionConfig:
    """Where the jobs run: ``workers`` LocalCluster workers (default 2, never more than the jobs;
    one worker runs the jobs one after another in this process, without Dask), or on SLURM one
    job per regime (``workers``, if given, caps the jobs submitted at once).

    Raises:
        ValueError: ``workers`` < 1, an unknown ``cluster``, or ``slurm`` without ``sbatch``.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"--workers {workers!r}: must be an integer >= 1 (1 runs the regimes one after another)")
    if cluster == "slurm":
        if shutil.which("sbatch") is None:
            raise ValueError(
                "--cluster slurm: no `sbatch` on this machine's PATH; run the command on a SLURM "
                "login node (or without --cluster for a local Dask cluster)"
            )
        n = n_jobs if workers is None else min(workers, n_jobs)
        return ExecutionConfig(workers=max(1, n), cluster="slurm", slurm=dict(slurm or {}))
    if cluster != "local":
        raise ValueError(f"--cluster {cluster!r}: must be 'local' or 'slurm'")
    return ExecutionConfig(workers=max(1, min(2 if workers is None else workers, n_jobs)))


# --------------------------------------------------------------------------- table
def _score(block: Mapping[str, Any] | None, mode: str) -> float:
    value = ((block or {}).get("r2_pooled_mean") or {}).get(mode)
    return math.nan if value is None else float(value)


def _blocks(summary: Mapping[str, Any]) -> tuple[dict[str, dict], dict[str, dict]]:
    """``(models, baselines)`` of a summary: baselines are the model entries named like a baseline
    (case-insensitive; ``summary["baselines"]`` then lists their names), or the blocks of a
    ``summary["baselines"]`` mapping."""
    models, baselines = {}, {}
    for name, block in (summary.get("models") or {}).items():
        (baselines if str(name).lower() in BASELINES else models)[str(name)] = block or {}
    listed = summary.get("baselines")
    if isinstance(listed, Mapping):  # else a list of the baseline names (kept among the models)
        for name, block in listed.items():
            if isinstance(block, Mapping):
                baselines.setdefault(str(name), dict(block))
    return models, {k.lower(): v for k, v in baselines.items()}


def catalogue_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per regime from ``rows`` (``env``, ``status``, ``summary`` or None, ``wall_seconds``,
    ``log``).

    Columns: ``regime``, ``status``, ``<MODEL> <shift_mode>`` for every model and shift mode
    present in any summary (pooled density R², NaN where absent), ``<baseline> <shift_mode>``
    for persistence and climatology, ``reference <MODEL>`` (:data:`REFERENCE_R2`, true shifts),
    ``wall_s`` and ``log`` (the job's log file, for failed regimes and regimes run now).
    """
    parsed = [(row, *_blocks(row.get("summary") or {})) for row in rows]
    model_names: dict[str, None] = {}
    modes: dict[str, None] = {}
    for _, models, baselines in parsed:
        for name, block in {**models, **baselines}.items():
            if name in models:
                model_names.setdefault(name)
            modes.update(dict.fromkeys((block.get("r2_pooled_mean") or {})))
    ordered = sorted(model_names, key=lambda m: (m not in ("MVAR", "LSTM"), m != "MVAR", m))
    ref_models = ordered or ["MVAR", "LSTM"]
    records = []
    for row, models, baselines in parsed:
        rec: dict[str, Any] = {"regime": row["env"], "status": row["status"]}
        for name in ordered:
            for mode in modes:
                rec[f"{name} {mode}"] = _score(models.get(name), mode)
        for name in BASELINES:
            for mode in modes:
                rec[f"{name} {mode}"] = _score(baselines.get(name), mode)
        for name in ref_models:
            rec[f"reference {name}"] = REFERENCE_R2.get(row["env"], {}).get(name, math.nan)
        wall = row.get("wall_seconds")
        rec["wall_s"] = math.nan if wall is None else float(wall)
        rec["log"] = row.get("log") or ""
        records.append(rec)
    return pd.DataFrame.from_records(records)


def table_markdown(table: pd.DataFrame, title: str) -> str:
    """The table as Markdown: scores to 3 decimals, wall time in minutes, ``–`` for no value."""
    def cell(column: str, value: Any) -> str:
        if value is None or (isinstance(value, float) and pd.isna(value)) or value == "":
            return MISSING
        if column == "wall_s":
            return f"{float(value) / 60:.1f} min"
        if isinstance(value, float):
            return f"{value:.3f}"
        return str(value)

    columns = ["wall" if c == "wall_s" else c for c in table.columns]
    lines = [f"# Catalogue `{title}`", "",
             "Pooled density R² per model and shift mode (mean over the test runs, "
             "`summary.json`); reference: the research code with true shifts.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, rec in table.iterrows():
        lines.append("| " + " | ".join(cell(c, rec[c]) for c in table.columns) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- driver
@dataclass
class CatalogueResult:
    table: pd.DataFrame
    markdown: str
    markdown_path: Path
    csv_path: Path
    failed: list[str]
    skipped: list[str]


def run_catalogue(
    envs: Sequence[str],
    *,
    name: str = "catalogue",
    workers: int | None = None,
    cluster: str = "local",
    slurm: Mapping[str, Any] | None = None,
    conf_source: str | Path | None = None,
    project: str | Path = PROJECT_PATH,
    force: bool = False,
    kedro_args: Sequence[str] = (),
    run_jobs: bool = True,
) -> CatalogueResult:
    """Run every regime of ``envs`` not already finished, then write the catalogue table.

    Every environment is loaded and validated, and ``workers`` / ``cluster`` checked, before any
    job starts. ``force`` reruns finished regimes too; ``run_jobs=False`` runs nothing and lists
    the unfinished regimes as ``not run``. The table goes to
    ``<data_root>/catalogue/<name>.md`` and ``.csv`` (``data_root`` of the first environment's
    globals, which ``ROM_DATA_ROOT`` overrides).
    """
    project = Path(project).resolve()
    conf = Path(conf_source).resolve() if conf_source else project / "conf"
    if not name or Path(name).name != name:
        raise ValueError(f"--name {name!r}: must be a plain file name such as 'thesis'")
    envs = expand_envs(envs)
    catalogue_execution(len(envs), workers, cluster, slurm)  # refuses bad workers / cluster first
    regimes = [plan_regime(env, conf, project) for env in envs]  # raises before any job
    todo = [r for r in regimes if force or not is_finished(r)]
    skipped = [r.env for r in regimes if r not in todo]
    execution = catalogue_execution(len(todo) or 1, workers, cluster, slurm)
    out_dir = data_root(envs[0], conf, project) / "catalogue"
    for env in skipped:
        logger.info("%s: finished with the current configuration, skipped (resumed)", env)

    outcomes: dict[str, dict[str, Any]] = {}
    jobs = [RegimeJob(env=r.env, project=str(project), conf_source=str(conf),
                      log_path=str(out_dir / "logs" / f"{r.env}.log"), kedro_args=tuple(kedro_args))
            for r in todo] if run_jobs else []
    by_env = {r.env: r for r in regimes}
    if jobs:
        prepare_tracking(envs[0], conf, project)
        logger.info("Running %d regime(s) on %s: %s", len(jobs), _where(execution),
                    ", ".join(j.env for j in jobs))
    for job, outcome in map_as_completed(run_job, jobs, execution, label="regimes"):
        outcomes[job.env] = outcome
        regime = by_env[job.env]
        if outcome["returncode"] == 0 and is_finished(regime):
            regime.record_path.write_text(json.dumps({
                "env": job.env, "fingerprint": regime.fingerprint,
                "wall_seconds": outcome["wall_seconds"], "log": outcome["log"],
                "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }, indent=2))
            logger.info("%s: done in %.1f s (log %s)", job.env, outcome["wall_seconds"], outcome["log"])
        else:
            outcome["failed"] = True
            logger.error("%s: FAILED (exit status %d); see %s", job.env, outcome["returncode"], outcome["log"])

    rows, failed = [], []
    for regime in regimes:
        outcome = outcomes.get(regime.env, {})
        if outcome.get("failed"):
            failed.append(regime.env)
            rows.append({"env": regime.env, "status": "failed", "summary": None,
                         "wall_seconds": outcome["wall_seconds"], "log": outcome["log"]})
            continue
        if regime.env not in outcomes and regime in todo:  # run_jobs=False
            rows.append({"env": regime.env, "status": "not run", "summary": None,
                         "wall_seconds": None, "log": None})
            continue
        record = _read_json(regime.record_path) or {}
        rows.append({"env": regime.env, "status": "ok", "summary": _read_json(regime.summary_path),
                     "wall_seconds": record.get("wall_seconds"), "log": record.get("log")})
    table = catalogue_table(rows)
    markdown = table_markdown(table, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = out_dir / f"{name}.md", out_dir / f"{name}.csv"
    md_path.write_text(markdown)
    table.to_csv(csv_path, index=False)
    logger.info("Catalogue table: %s and %s", md_path, csv_path)
    return CatalogueResult(table, markdown, md_path, csv_path, failed, skipped)


def data_root(env: str, conf_source: Path, project: Path = PROJECT_PATH) -> Path:
    """``data_root`` of ``env``'s globals (``ROM_DATA_ROOT`` overrides it), relative to ``project``."""
    return _resolve(str(_loader(env, conf_source)["globals"]["data_root"]), project)


def prepare_tracking(env: str, conf_source: Path, project: Path = PROJECT_PATH) -> None:
    """Create (and migrate) the MLflow tracking database once, before the jobs start.

    Concurrent ``kedro run``s that each find no database race to create the same one (SQLite:
    "Online migration expected to match one row"); a database that exists is shared safely.
    Nothing happens without the ``mlflow`` extra or with a non-SQLite tracking URI.
    """
    from rom_pipeline.framework.tracking import mlflow_available

    if not mlflow_available():
        return
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        loader = _loader(env, conf_source, config_patterns={"mlflow": ["mlflow*", "mlflow*/**"]})
        uri = str(loader["mlflow"]["server"]["mlflow_tracking_uri"])
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return
    path = _resolve(uri[len(prefix):], project)
    path.parent.mkdir(parents=True, exist_ok=True)
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=prefix + str(path)).search_experiments(max_results=1)


def _where(execution: ExecutionConfig) -> str:
    if execution.cluster == "slurm":
        return f"SLURM ({execution.workers} job(s))"
    return "a local Dask cluster of %d worker(s)" % execution.workers if execution.parallel else "this process"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- command line
def _slurm_options(env: str, conf: Path, overrides: Sequence[str]) -> dict[str, Any]:
    from rom_pipeline.cli.hpc import load_execution

    options = dict(load_execution(env, conf).slurm)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--slurm {item!r}: write KEY=VALUE, e.g. --slurm memory=8GB")
        options[key] = yaml.safe_load(value)
    return options


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rom_pipeline.cli.catalogue", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("envs", nargs="*", help="Kedro environments (folders of conf/)")
    common.add_argument("--envs", dest="groups", action="append", default=[],
                        help=f"add a group of environments: {', '.join(ENV_GROUPS)}")
    common.add_argument("--name", default=None, help="table file name (default: the group, else 'catalogue')")
    common.add_argument("--conf-source", default=None, help="configuration folder (default: conf/)")
    sub.add_parser("table", parents=[common],
                   help="print the table of what is finished now, running nothing")
    run = sub.add_parser("run", parents=[common],
                         help="run the regimes not yet finished, then print the table")
    run.add_argument("--workers", type=int, default=None,
                     help="regimes run at once (LocalCluster workers; default 2); on SLURM caps the jobs")
    run.add_argument("--cluster", default="local", help="local (default) or slurm (needs the slurm extra)")
    run.add_argument("--slurm-env", default="hpc",
                     help="environment whose execution.slurm sizes each SLURM job (default hpc)")
    run.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                     help="override one execution.slurm option, e.g. --slurm memory=16GB")
    run.add_argument("--force", action="store_true", help="rerun regimes that are already finished")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    table_out = sys.stdout
    # Kedro's rich logging writes to stdout: everything but the table goes to stderr.
    with redirect_stdout(sys.stderr):
        try:
            envs = expand_envs(args.envs, args.groups)
            conf = Path(args.conf_source).resolve() if args.conf_source else PROJECT_PATH / "conf"
            name = args.name or (args.groups[0] if len(args.groups) == 1 and not args.envs else "catalogue")
            if args.command == "table":
                result = run_catalogue(envs, name=name, conf_source=conf, run_jobs=False)
            else:
                slurm = _slurm_options(args.slurm_env, conf, args.slurm) if args.cluster == "slurm" else None
                result = run_catalogue(envs, name=name, workers=args.workers, cluster=args.cluster,
                                       slurm=slurm, conf_source=conf, force=args.force)
        except (ValueError, ImportError) as exc:  # ConfigError is a ValueError
            parser.exit(2, f"error: {exc}\n")
        if result.failed:
            logger.error("%d regime(s) failed: %s", len(result.failed), ", ".join(result.failed))
    table_out.write(result.markdown)
    table_out.flush()
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
