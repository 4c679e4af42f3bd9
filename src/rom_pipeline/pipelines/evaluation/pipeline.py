from kedro.pipeline import Node, Pipeline

from rom_pipeline.pipelines.evaluation import nodes
from rom_pipeline.pipelines.models import enabled_models, setup_pipeline


def parameter_blocks() -> list[str]:
    """Every block of the parameter tree (``config_used.yaml`` records them all)."""
    from rom_pipeline.config import ExperimentConfig

    return [name for name in ExperimentConfig.model_fields if name != "experiment"]


def create_pipeline(models: list[str] | None = None, **kwargs) -> Pipeline:
    """The comparison of ``models`` (default: the enabled ones; their outputs are read by name,
    ``<model>.test_results`` ..., so any registered forecaster takes part)."""
    models = enabled_models() if models is None else models
    results = [f"{m}.test_results" for m in models]
    curves = [f"{m}.r2_vs_time" for m in models]
    summaries = [f"{m}.training_summary" for m in models]
    predictions = [f"{m}.predictions" for m in models]
    blocks = {name: f"params:{name}" for name in parameter_blocks()}
    evaluation = Pipeline(
        [
            Node(nodes.score_baselines,
                 ["train_latent", "pod_basis", "test.runs", "rom_grid", "forecast_setup"],
                 ["baseline_test_results", "baseline_r2_vs_time"], name="score_baselines"),
            Node(nodes.collect_test_results, ["baseline_test_results", *results],
                 "all_test_results", name="collect_test_results"),
            Node(nodes.build_comparison, "all_test_results",
                 ["comparison_table", "comparison_markdown"], name="build_comparison"),
            Node(nodes.plot_r2_curves, [*curves, "baseline_r2_vs_time"], "r2_curves_plot",
                 name="plot_r2_curves"),
            Node(nodes.plot_metric_bars, "all_test_results", "metric_bars_plot", name="plot_metric_bars"),
            Node(nodes.ensemble_skill, ["forecast_setup", *curves, "baseline_r2_vs_time"],
                 ["ensemble_skill_by_lead", "ensemble_skill_plot"], name="ensemble_skill"),
            Node(nodes.snapshot_figures,
                 ["test.runs", "rom_grid", "forecast_setup", *summaries, *predictions],
                 ["snapshot_grid_plot", "comparison_animations"], name="snapshot_figures"),
            Node(nodes.record_parameters, blocks, "config_used", name="record_parameters"),
            Node(nodes.summarise_experiment,
                 ["all_test_results", "pod_summary", "forecast_setup", "config_used",
                  "ensemble_skill_by_lead", *summaries],
                 "summary", name="summarise_experiment"),
            Node(nodes.build_report_page,
                 ["comparison_markdown", "all_test_results", "comparison_animations", "summary"],
                 "report_page", name="build_report_page"),
        ],
        namespace="evaluation",
        parameters=set(blocks.values()),
        inputs={"test.runs", "pod_summary", "train_latent", "pod_basis", "rom_grid", "forecast_setup",
                *results, *curves, *summaries, *predictions},
        outputs={"baseline_test_results", "baseline_r2_vs_time", "all_test_results",
                 "comparison_table", "comparison_markdown", "r2_curves_plot", "metric_bars_plot",
                 "ensemble_skill_by_lead", "ensemble_skill_plot", "snapshot_grid_plot",
                 "comparison_animations", "summary", "config_used", "report_page"},
    )
    return setup_pipeline() + evaluation
