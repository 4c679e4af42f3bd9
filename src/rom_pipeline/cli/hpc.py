"""Running the pipeline on a SLURM cluster: the job scripts, printed from the configuration.

A SLURM run has two kinds of jobs:

* one **driver** job runs ``kedro run --env hpc --runner=rom_pipeline.framework.runner.DaskRunner``. With
  ``execution.cluster: slurm`` (``conf/hpc``) it starts a Dask scheduler and, through
  ``dask_jobqueue.SLURMCluster``, submits
* ``execution.workers`` **worker** jobs, each running one Dask worker sized by
  ``execution.slurm`` (cores, memory, walltime, partition, account, extra ``#SBATCH`` lines).

Every node of the pipeline then runs as a task on that one cluster, and the simulation runs and
POD per-run work inside the nodes go to the same workers (see :mod:`rom_pipeline.framework.runner`). All
jobs must see ``data_root`` (set ``ROM_DATA_ROOT`` to shared storage) and this Python environment.
Outputs are those of a local run, bit for bit, in the same ``<data_root>/<experiment>`` folder, so
a stage started on a workstation can be finished on the cluster and vice versa.

Recipe::

    pip install 'rom_pipeline[slurm]'                        # dask-jobqueue
    python -m rom_pipeline.cli.hpc job-script --env hpc          # review the worker job SLURM will get
    python -m rom_pipeline.cli.hpc driver-script --env hpc > driver.sbatch
    ROM_DATA_ROOT=/scratch/$USER/rom sbatch driver.sbatch    # extra kedro options: sbatch driver.sbatch --pipelines=simulation
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from rom_pipeline.execution.parallel import ExecutionConfig, slurm_cluster_kwargs

SCHEDULER_PLACEHOLDER = "tcp://SCHEDULER:PORT"


def load_execution(env: str, conf_source: str | Path = "conf") -> ExecutionConfig:
    """The validated ``execution`` block of a Kedro environment (merged over ``conf/base``)."""
    from kedro.config import OmegaConfigLoader

    from rom_pipeline.config import validate_parameters
    from rom_pipeline.settings import CONFIG_LOADER_ARGS

    conf_source = Path(conf_source)
    if not (conf_source / env).is_dir():
        raise ValueError(f"--env {env!r}: no folder {conf_source / env}; pick one of the environments in {conf_source}")
    loader = OmegaConfigLoader(conf_source=str(conf_source), **{**CONFIG_LOADER_ARGS, "default_run_env": env})
    return validate_parameters(dict(loader["parameters"])).execution.to_execution()


def render_job_script(execution: ExecutionConfig) -> str:
    """The batch script ``dask_jobqueue.SLURMCluster`` submits for each worker job.

    Built by ``SLURMCluster(**kwargs).job_script()`` with the keyword arguments the pipeline uses
    (:func:`rom_pipeline.execution.parallel.slurm_cluster_kwargs`). Rendering starts a throw-away scheduler
    on 127.0.0.1; its address in the script is replaced by ``tcp://SCHEDULER:PORT`` (the real one
    is filled in when the pipeline submits the jobs).

    Raises:
        ImportError: dask-jobqueue is not installed (``pip install 'rom_pipeline[slurm]'``).
        ValueError: an ``execution.slurm`` key is not a SLURMCluster option.
    """
    kwargs = slurm_cluster_kwargs(execution)  # refuses unknown keys, needs dask-jobqueue
    from dask_jobqueue import SLURMCluster

    # With an explicit host the throw-away scheduler ignores `interface` (workers still get it).
    scheduler = {k: v for k, v in kwargs["scheduler_options"].items() if k != "interface"}
    kwargs["scheduler_options"] = {**scheduler, "host": "127.0.0.1", "dashboard_address": None}
    cluster = SLURMCluster(**kwargs)
    try:
        script = cluster.job_script()
        address = cluster.scheduler_address
    finally:
        cluster.close()
    return script.replace(address, SCHEDULER_PLACEHOLDER)


def render_driver_script(env: str, execution: ExecutionConfig, project: str | Path = ".") -> str:
    """An ``sbatch`` script for the driver job (it needs no dask-jobqueue to be rendered).

    The driver is light (it schedules; the workers compute), so it asks for 2 CPUs and 4 GB in the
    workers' partition and account, for the workers' walltime. Arguments given to ``sbatch`` after
    the script name are passed on to ``kedro run``.
    """
    slurm = {**execution.slurm}
    lines = ["#!/usr/bin/env bash", "#SBATCH -J rom-pipeline-driver"]
    if slurm.get("queue"):
        lines.append(f"#SBATCH -p {slurm['queue']}")
    if slurm.get("account"):
        lines.append(f"#SBATCH -A {slurm['account']}")
    lines += [
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=4G",
        f"#SBATCH -t {slurm.get('walltime', '02:00:00')}",
    ]
    if slurm.get("log_directory"):
        lines.append(f"#SBATCH -o {slurm['log_directory']}/rom-pipeline-driver-%j.out")
    lines += [f"#SBATCH {d}" for d in slurm.get("job_extra_directives") or []]
    lines += ["set -euo pipefail", *(slurm.get("job_script_prologue") or [])]
    lines.append(f"cd {shlex.quote(str(Path(project).resolve()))}")
    data_root = os.environ.get("ROM_DATA_ROOT")
    if data_root:
        lines.append(f"export ROM_DATA_ROOT=${{ROM_DATA_ROOT:-{shlex.quote(data_root)}}}")
    else:
        lines.append(': "${ROM_DATA_ROOT:?set ROM_DATA_ROOT to storage every node can reach}"')
    lines.append("export KEDRO_DISABLE_TELEMETRY=1 MPLBACKEND=Agg")
    kedro = Path(sys.executable).with_name("kedro")
    lines.append(f'{shlex.quote(str(kedro))} run --env {shlex.quote(env)} --runner=rom_pipeline.framework.runner.DaskRunner "$@"')
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rom_pipeline.cli.hpc", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("job-script", "print the batch script of one Dask worker job (needs dask-jobqueue)"),
        ("driver-script", "print an sbatch script that runs the pipeline on the SLURM cluster"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--env", default="hpc", help="Kedro environment (default: hpc)")
        p.add_argument("--conf-source", default="conf", help="configuration folder (default: ./conf)")
    args = parser.parse_args(argv)
    try:
        execution = load_execution(args.env, args.conf_source)
        if args.command == "job-script":
            if execution.cluster != "slurm":
                raise ValueError(
                    f"execution.cluster = {execution.cluster!r} in --env {args.env}: worker job scripts "
                    "exist only for cluster: slurm (see conf/hpc/parameters.yml)"
                )
            text = render_job_script(execution)
        else:
            text = render_driver_script(args.env, execution, Path(args.conf_source).resolve().parent)
    except (ImportError, ValueError) as exc:  # ConfigError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
