"""Command line over the tracked MLflow runs (optional extra ``mlflow``).

``python -m rom_pipeline.cli.tracking table [--tracking-uri URI] [--env ENV]`` prints one row per
tracked run of every experiment with its headline metrics;
``python -m rom_pipeline.cli.tracking ui [--env ENV] [--port 5000]`` serves the MLflow UI on the
same store. What gets logged, and how, is :mod:`rom_pipeline.framework.tracking`.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from rom_pipeline.framework.tracking import HEADLINE, mlflow_available

PROJECT_PATH = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------------- the table command
def default_tracking_uri(env: str | None = None, project_path: Path = PROJECT_PATH) -> str:
    """The tracking URI ``kedro run`` uses: ``server.mlflow_tracking_uri`` of the project's
    ``mlflow.yml`` for ``env`` (``MLFLOW_TRACKING_URI`` and ``ROM_DATA_ROOT`` are honoured the
    same way), with a relative ``sqlite:///`` or file path made absolute from the project root."""
    from kedro.config import OmegaConfigLoader

    from rom_pipeline.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(
        conf_source=str(project_path / "conf"),
        **{**CONFIG_LOADER_ARGS, "default_run_env": env or CONFIG_LOADER_ARGS["default_run_env"]},
        config_patterns={"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]},
    )
    uri = str((loader["mlflow"].get("server") or {}).get("mlflow_tracking_uri") or "mlruns")
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(project_path / uri.removeprefix("sqlite:///"))
    if "://" not in uri and uri not in ("databricks", "databricks-uc"):
        path = Path(uri)
        return (path if path.is_absolute() else project_path / path).as_uri()
    return uri


def headline_table(tracking_uri: str, experiments: Sequence[str] = ()) -> pd.DataFrame:
    """One row per run of every experiment (or of ``experiments``) with its headline metrics.

    Columns: ``experiment``, ``run_name``, ``start`` (UTC), ``status``, ``run_id``, then the
    headline metric columns (mean pooled R² per model and shift mode, diverged runs, training
    time, POD r and energy, search best scores), newest run first within an experiment.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    known = {e.experiment_id: e.name for e in client.search_experiments()}
    if experiments:
        unknown = sorted(set(experiments) - set(known.values()))
        if unknown:
            raise ValueError(f"no MLflow experiment named {unknown} at {tracking_uri}; known: "
                             f"{sorted(known.values())}")
        known = {i: n for i, n in known.items() if n in set(experiments)}
    rows = []
    for run in client.search_runs(list(known), max_results=50_000):
        metrics = run.data.metrics
        rows.append({
            "experiment": known[run.info.experiment_id],
            "run_name": run.info.run_name,
            "start": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M"),
            "status": run.info.status,
            "run_id": run.info.run_id,
            **{k: v for k, v in metrics.items() if HEADLINE.search(k)},
        })
    fixed = ["experiment", "run_name", "start", "status", "run_id"]
    table = pd.DataFrame(rows, columns=fixed + sorted({k for r in rows for k in r} - set(fixed)))
    return table.sort_values(["experiment", "start"], ascending=[True, False],
                             kind="stable").reset_index(drop=True)


def format_table(table: pd.DataFrame, fmt: str = "markdown", digits: int = 4) -> str:
    """``markdown`` (a pipe table), ``plain`` (aligned columns) or ``csv``."""
    if fmt == "csv":
        return table.to_csv(index=False)
    shown = table.copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}g}")
    shown = shown.fillna("").astype(str)
    if fmt == "plain":
        return shown.to_string(index=False)
    lines = ["| " + " | ".join(shown.columns) + " |",
             "|" + "|".join("---" for _ in shown.columns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join(lines)


def ui_command(tracking_uri: str, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The MLflow UI on ``tracking_uri``, started with this interpreter (``python -m mlflow``),
    so it works from ``.venv/bin/python`` without an activated venv (``kedro mlflow ui`` looks
    ``mlflow`` up on PATH)."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
            "--host", host, "--port", str(port)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rom_pipeline.cli.tracking",
                                     description="Tracked MLflow runs of rom_pipeline.")
    sub = parser.add_subparsers(dest="command", required=True)
    ui = sub.add_parser("ui", help="serve the MLflow UI on the project's tracking store")
    ui.add_argument("--tracking-uri", default=None, help="MLflow store (default: as for table)")
    ui.add_argument("--env", default=None, help="Kedro environment whose mlflow.yml to read")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    table = sub.add_parser("table", help="print every experiment's runs with headline metrics")
    table.add_argument("--tracking-uri", default=None,
                       help="MLflow store or server (default: the project's mlflow.yml, which "
                            "honours MLFLOW_TRACKING_URI and ROM_DATA_ROOT)")
    table.add_argument("--env", default=None, help="Kedro environment whose mlflow.yml to read")
    table.add_argument("--experiment", action="append", default=[],
                       help="only this experiment (repeatable)")
    table.add_argument("--format", choices=("markdown", "plain", "csv"), default="markdown")
    args = parser.parse_args(argv)
    if not mlflow_available():
        print("MLflow is not installed: pip install -e '.[mlflow]'", file=sys.stderr)
        return 2
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(args.env)
    if args.command == "ui":
        command = ui_command(uri, args.host, args.port)
        print(f"MLflow UI on {uri}: http://{args.host}:{args.port}", file=sys.stderr)
        return subprocess.call(command)
    result = headline_table(uri, args.experiment)
    if result.empty:
        print(f"no tracked runs at {uri}", file=sys.stderr)
        return 1
    print(format_table(result, args.format))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
