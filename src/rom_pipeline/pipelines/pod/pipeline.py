from kedro.pipeline import Node, Pipeline

from rom_pipeline.pipelines.models import rom_grid_pipeline
from rom_pipeline.pipelines.pod import nodes


def create_pipeline(**kwargs) -> Pipeline:
    pod = Pipeline(
        [
            Node(nodes.fit_pod_basis, ["train.runs", "params:rom", "params:execution", "rom_grid"],
                 ["pod_basis", "pod_summary"], name="fit_pod_basis"),
            Node(nodes.project_training_runs, ["train.runs", "pod_basis", "rom_grid"],
                 "train_latent", name="project_training_runs"),
            Node(nodes.plot_pod_spectrum, ["pod_basis", "params:rom"], "pod_spectrum_plot",
                 name="plot_pod_spectrum"),
            Node(nodes.plot_pod_modes, "pod_basis", "pod_modes_plot", name="plot_pod_modes"),
        ],
        namespace="pod",
        inputs={"train.runs", "rom_grid"},
        parameters={"params:rom", "params:execution"},
        outputs={"pod_basis", "pod_summary", "train_latent", "pod_spectrum_plot", "pod_modes_plot"},
    )
    return rom_grid_pipeline() + pod
