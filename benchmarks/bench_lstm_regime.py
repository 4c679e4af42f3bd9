"""One thesis regime's LSTM stage on a chosen device: the regime's own ``lstm`` block fitted to its
training latent trajectories, timed, then scored on the regime's unseen test runs.

Two steps, so that the fit can run on a machine that holds only the latent training set (a GPU
host without Kedro) and the scoring where the regime's test runs lie:

    # 1. fit (needs NumPy, PyTorch and PyYAML only): time to early stop, epochs, s/epoch,
    #    held-out closed-loop skill; writes the fitted model and a JSON record
    python benchmarks/bench_lstm_regime.py fit blackhole_vs \\
        --latent data/blackhole_vs/rom_common/latent_dataset.npz --device cuda \\
        --out lstm_cuda.pt --record lstm_cuda.json
    # 2. score the fitted model with the regime's evaluation protocol (Kedro project, test runs
    #    under ROM_DATA_ROOT), beside the CPU-trained LSTM of benchmarks/results/<regime>.csv
    python benchmarks/bench_lstm_regime.py score blackhole_vs --model lstm_cuda.pt \\
        --record lstm_cuda.json --data-root /tmp/rom_bench_blackhole_vs

``score`` applies the ``lab_ensemble`` blend with climatology that the regime's lstm pipeline
stored (``<regime>/LSTM/ensemble_blend.json``, when there is one): its weights come from refits
of the same block on held-out training runs, so they hold for a model fitted elsewhere.
``fit`` reads the ``lstm`` block of ``conf/<regime>/parameters.yml`` (every key is explicit in the
thesis environments) and overrides only ``device`` (and ``num_threads`` with ``--threads``). The
stage's wall time on CPU is the ``lstm`` entry of ``benchmarks/results/<regime>_times.json``
(the whole ``kedro run --pipelines=lstm``, this 2-core machine); ``fit`` prints the ratio.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "benchmarks" / "results"


def latest_version(path: Path) -> Path:
    """A Kedro-versioned dataset path (``x.npz/<version>/x.npz``) resolved to its newest version;
    a plain file is returned as it is."""
    if path.is_file():
        return path
    versions = sorted(p for p in path.iterdir() if p.is_dir())
    if not versions:
        raise SystemExit(f"--latent {path}: neither a file nor a versioned dataset folder")
    return versions[-1] / path.name


def regime_lstm_block(regime: str) -> dict:
    """The regime's ``lstm`` block as a run sees it: through the project's config loader (base
    merged under the environment) where Kedro is installed; else from the environment's own
    ``parameters.yml``, which must then spell out every key (the thesis environments do)."""
    try:
        from kedro.config import OmegaConfigLoader

        from rom_pipeline.settings import CONFIG_LOADER_ARGS
    except ImportError:
        import yaml

        params = yaml.safe_load((PROJECT / "conf" / regime / "parameters.yml").read_text())
    else:
        loader = OmegaConfigLoader(conf_source=str(PROJECT / "conf"),
                                   **{**CONFIG_LOADER_ARGS, "default_run_env": regime})
        params = loader["parameters"]
    if "lstm" not in params:
        raise SystemExit(f"environment {regime!r} has no 'lstm' block")
    return {k: v for k, v in dict(params["lstm"]).items() if k != "enabled"}


def fit(args: argparse.Namespace) -> None:
    import torch

    from rom_pipeline.rom.latent import unpack_trajectories
    from rom_pipeline.rom.lstm import LSTMForecaster

    options = {**regime_lstm_block(args.regime), "device": args.device}
    if args.threads is not None:
        options["num_threads"] = args.threads
    if args.max_epochs is not None:
        options["max_epochs"] = args.max_epochs
    with np.load(latest_version(Path(args.latent))) as arrays:
        trajectories = list(unpack_trajectories(dict(arrays)).values())
    n_frames = sum(t.shape[0] for t in trajectories)
    print(f"{args.regime}: {len(trajectories)} training runs, {n_frames} latent frames, "
          f"r = {trajectories[0].shape[1]}; device {args.device}"
          + (f" ({torch.cuda.get_device_name(0)})" if args.device.startswith("cuda") else ""),
          flush=True)
    tic = time.perf_counter()
    model = LSTMForecaster(**options).fit(trajectories)
    wall = time.perf_counter() - tic
    log = model.training_log_
    best = log.loc[log["epoch"] == model.best_epoch_].iloc[0]
    epochs = int(log["epoch"].max())
    cpu_times = RESULTS / f"{args.regime}_times.json"
    cpu_stage = json.loads(cpu_times.read_text()).get("lstm") if cpu_times.exists() else None
    record = {
        "regime": args.regime, "device": str(model.device_),
        "device_name": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "fit_seconds": round(wall, 2), "epochs_run": epochs,
        "best_epoch": int(model.best_epoch_),
        "median_epoch_seconds": round(float(log["seconds"].median()), 4),
        "best_val_loss": float(best["val_loss"]),
        "best_val_rollout_r2": float(best["val_rollout_r2"]),
        "best_val_rollout_skill": float(best["val_rollout_skill"]),
        "cpu_stage_seconds": cpu_stage, "options": {k: v for k, v in options.items()},
    }
    print(json.dumps(record, indent=1))
    if cpu_stage and args.max_epochs is None:
        print(f"fit {wall:.1f} s on {model.device_} against the CPU stage's {cpu_stage:.0f} s "
              f"({cpu_times.relative_to(PROJECT)}): {cpu_stage / wall:.1f}x")
    if args.out:
        torch.save(model.save_payload(), args.out)
    if args.record:
        Path(args.record).write_text(json.dumps(record, indent=1) + "\n")


def score(args: argparse.Namespace) -> None:
    import pandas as pd
    import torch
    from regime_artifacts import load_regime

    from rom_pipeline.evaluation.blend import ClimatologyBlend
    from rom_pipeline.evaluation.protocol import evaluate_many
    from rom_pipeline.rom.lstm import LSTMForecaster

    model = LSTMForecaster.from_payload(torch.load(args.model, weights_only=False), device="cpu")
    regime = load_regime(args.regime, args.data_root)
    # The lab_ensemble mode's blend with climatology, as the lstm pipeline stored it: its weights
    # come from refits of the regime's lstm block on held-out training runs, not from the fitted
    # model, so they apply to a model fitted elsewhere with the same block.
    blend_file = Path(args.data_root) / args.regime / "LSTM" / "ensemble_blend.json"
    stored = json.loads(blend_file.read_text()) if blend_file.exists() else None
    blend = ClimatologyBlend.from_dict(stored) if stored else None
    results, _, _ = evaluate_many(model, regime.pod, regime.runs, regime.config,
                                  track_model=regime.track_model, blend=blend)
    ours = results.groupby("shift_mode")["r2_pooled"].mean()
    committed_csv = RESULTS / f"{args.regime}.csv"  # bench_thesis_regime.py's table, if any
    cpu = pd.DataFrame(columns=["r2_pooled"])
    if committed_csv.exists():
        committed = pd.read_csv(committed_csv)
        cpu = committed[(committed.model == "LSTM") & (committed.family == "all")].set_index("shift_mode")
    record = json.loads(Path(args.record).read_text()) if args.record else {}
    lines = [f"# `{args.regime}`: LSTM stage on {record.get('device_name', '?')}", "",
             f"Fit: {record.get('fit_seconds', '?')} s, {record.get('epochs_run', '?')} epochs "
             f"(best {record.get('best_epoch', '?')}), median {record.get('median_epoch_seconds', '?')} "
             f"s/epoch; CPU stage on the 2-core machine: {record.get('cpu_stage_seconds') or float('nan'):.0f} s.", "",
             "| shift mode | LSTM fitted on this device: mean pooled test R² | CPU-fitted LSTM (committed) |",
             "|---|---:|---:|"]
    for mode, value in ours.items():
        ref = f"{cpu.loc[mode, 'r2_pooled']:.4f}" if mode in cpu.index else "–"
        lines.append(f"| {mode} | {value:.4f} | {ref} |")
    print("\n".join(lines))
    if args.report:
        Path(args.report).write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p_fit = sub.add_parser("fit", help="fit and time the regime's LSTM")
    p_fit.add_argument("regime")
    p_fit.add_argument("--latent", required=True, help="the regime's latent_dataset.npz")
    p_fit.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    p_fit.add_argument("--threads", type=int, default=None, help="override lstm.num_threads")
    p_fit.add_argument("--max-epochs", type=int, default=None, help="override lstm.max_epochs")
    p_fit.add_argument("--out", default=None, help="write the fitted model (torch.save) here")
    p_fit.add_argument("--record", default=None, help="write the JSON record here")
    p_score = sub.add_parser("score", help="score a fitted model on the regime's test runs")
    p_score.add_argument("regime")
    p_score.add_argument("--model", required=True)
    p_score.add_argument("--record", default=None, help="the JSON record of the fit")
    p_score.add_argument("--data-root", required=True, help="ROM_DATA_ROOT holding the regime's run")
    p_score.add_argument("--report", default=None, help="write the markdown table here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    (fit if args.step == "fit" else score)(args)


if __name__ == "__main__":
    main()
