"""Custom Kedro datasets that kedro-datasets lacks."""
from rom_pipeline.datasets.animation import ComparisonAnimationDataset
from rom_pipeline.datasets.files import NpzDataset, TorchPayloadDataset
from rom_pipeline.datasets.runs import RunCollection, RunFolderDataset, SimulationRunsDataset
from rom_pipeline.datasets.text import MarkdownDataset

__all__ = [
    "ComparisonAnimationDataset",
    "MarkdownDataset",
    "NpzDataset",
    "RunCollection",
    "RunFolderDataset",
    "SimulationRunsDataset",
    "TorchPayloadDataset",
]
