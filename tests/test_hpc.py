"""The SLURM recipe: the `hpc` environment, the worker job script SLURMCluster submits, the driver
sbatch script, and the DaskRunner picking the cluster from the environment."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rom_pipeline.framework import session_state
from rom_pipeline.config import validate_parameters
from rom_pipeline.cli.hpc import SCHEDULER_PLACEHOLDER, load_execution, render_driver_script, render_job_script
from rom_pipeline.execution.parallel import ExecutionConfig, slurm_cluster_kwargs
from rom_pipeline.framework.runner import DaskRunner
from tests.conftest import PROJECT, _load_env

HPC_PARAMETERS = PROJECT / "conf" / "hpc" / "parameters.yml"


def test_hpc_environment_is_the_default_science_on_slurm(monkeypatch, tmp_path):
    hpc, base = _load_env("hpc"), _load_env("base")
    cfg = validate_parameters(hpc)
    execution = cfg.execution.to_execution()
    assert (execution.cluster, execution.workers, execution.scheduler_address) == ("slurm", 16, None)
    assert execution.parallel
    hpc.pop("execution"), base.pop("execution")
    assert hpc == base  # execution is the only difference: results are those of a local run

    from kedro.config import OmegaConfigLoader

    from rom_pipeline.settings import CONFIG_LOADER_ARGS

    monkeypatch.setenv("ROM_DATA_ROOT", str(tmp_path / "scratch"))
    loader = OmegaConfigLoader(conf_source=str(PROJECT / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": "hpc"})
    assert dict(loader["globals"]) == {"data_root": str(tmp_path / "scratch"), "experiment": "default"}


def test_every_slurm_key_is_documented_and_a_slurmcluster_option():
    pytest.importorskip("dask_jobqueue")
    from rom_pipeline.execution.parallel import slurm_option_names

    text = HPC_PARAMETERS.read_text()
    slurm = yaml.safe_load(text)["execution"]["slurm"]
    assert set(slurm) <= slurm_option_names()
    for key in slurm:
        line = next(line for line in text.splitlines() if re.match(rf"\s+{key}:", line))
        assert "#" in line and len(line.split("#", 1)[1].strip()) > 10, f"slurm.{key} is undocumented"


def test_job_script_carries_every_setting():
    pytest.importorskip("dask_jobqueue")
    execution = ExecutionConfig(workers=4, cluster="slurm", slurm={
        "queue": "compute", "account": "proj42", "cores": 2, "memory": "8GB", "walltime": "04:30:00",
        "job_extra_directives": ["--constraint=cpu"], "job_script_prologue": ["module load python/3.11"],
    })
    script = render_job_script(execution)
    lines = script.splitlines()
    for directive in ("-p compute", "-A proj42", "--cpus-per-task=2", "--mem=8G", "-t 04:30:00",
                      "--constraint=cpu"):
        assert f"#SBATCH {directive}" in lines, directive
    command = lines[-1]
    assert command.startswith(f"{sys.executable} -m distributed.cli.dask_worker {SCHEDULER_PLACEHOLDER} ")
    assert "--nthreads 2" in command and "--memory-limit 7.45GiB" in command
    assert lines.index("module load python/3.11") < lines.index(command)  # prologue first


def test_cli_prints_the_hpc_job_script_and_refuses_a_local_environment():
    pytest.importorskip("dask_jobqueue")
    run = [sys.executable, "-m", "rom_pipeline.cli.hpc", "job-script"]
    ok = subprocess.run([*run, "--env", "hpc"], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    for line in ("#SBATCH -p normal", "#SBATCH --cpus-per-task=1", "#SBATCH --mem=4G", "#SBATCH -t 02:00:00",
                 "export KEDRO_DISABLE_TELEMETRY=1 MPLBACKEND=Agg OMP_NUM_THREADS=1"):
        assert line in ok.stdout.splitlines(), line
    local = subprocess.run([*run, "--env", "test"], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert local.returncode == 2
    assert "execution.cluster = 'local' in --env test" in local.stderr
    assert "cluster: slurm (see conf/hpc/parameters.yml)" in local.stderr


def test_unknown_slurm_option_is_refused_by_name():
    pytest.importorskip("dask_jobqueue")
    execution = ExecutionConfig(cluster="slurm", slurm={"queu": "normal", "memory": "2GB"})
    with pytest.raises(ValueError) as info:
        slurm_cluster_kwargs(execution)
    message = str(info.value)
    assert "execution.slurm.queu = 'normal': unknown SLURMCluster option" in message
    assert "remove or fix it" in message and "queue" in message.split("accepted:")[1]


def test_missing_dask_jobqueue_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"pip install 'rom_pipeline\[slurm\]'"):
        slurm_cluster_kwargs(ExecutionConfig(cluster="slurm"))


def test_slurm_dashboard_stays_on_loopback_unless_asked():
    pytest.importorskip("dask_jobqueue")
    default = slurm_cluster_kwargs(ExecutionConfig(cluster="slurm"))
    assert default["scheduler_options"] == {"dashboard_address": "127.0.0.1:8787"}
    assert (default["cores"], default["processes"], default["memory"]) == (1, 1, "4GB")
    chosen = slurm_cluster_kwargs(ExecutionConfig(cluster="slurm", slurm={
        "scheduler_options": {"dashboard_address": ":9999", "interface": "ib0"}}))
    assert chosen["scheduler_options"] == {"dashboard_address": ":9999", "interface": "ib0"}


@pytest.mark.parametrize("data_root", ["/scratch/me/rom data", None])
def test_driver_script_runs_the_pipeline_on_the_cluster(monkeypatch, tmp_path, data_root):
    if data_root:
        monkeypatch.setenv("ROM_DATA_ROOT", data_root)
    else:
        monkeypatch.delenv("ROM_DATA_ROOT", raising=False)
    script = render_driver_script("hpc", load_execution("hpc", PROJECT / "conf"), PROJECT)
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "#SBATCH -p normal" in lines and "#SBATCH -t 02:00:00" in lines
    assert f"cd {PROJECT}" in lines
    if data_root:
        assert "export ROM_DATA_ROOT=${ROM_DATA_ROOT:-'/scratch/me/rom data'}" in lines
    else:
        assert ': "${ROM_DATA_ROOT:?set ROM_DATA_ROOT to storage every node can reach}"' in lines
    kedro = Path(sys.executable).with_name("kedro")
    assert lines[-1] == f'{kedro} run --env hpc --runner=rom_pipeline.framework.runner.DaskRunner "$@"'
    path = tmp_path / "driver.sbatch"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0  # valid shell


def test_dask_runner_takes_its_cluster_from_the_environment(monkeypatch):
    monkeypatch.setitem(session_state._ACTIVE, "params", _load_env("hpc"))
    monkeypatch.delitem(session_state._ACTIVE, "config", raising=False)  # validated from "params"
    from_env = DaskRunner().execution_config()
    assert (from_env.cluster, from_env.workers) == ("slurm", 16)
    assert from_env.slurm["queue"] == "normal"
    overridden = DaskRunner(workers=3).execution_config()
    assert (overridden.cluster, overridden.workers, overridden.slurm) == ("slurm", 3, from_env.slurm)
    remote = DaskRunner(scheduler_address="tcp://10.0.0.5:8786").execution_config()
    assert remote.scheduler_address == "tcp://10.0.0.5:8786"
    with pytest.raises(ValueError, match=r"execution.workers = 0"):
        DaskRunner(workers=0)
