"""Datasets: one on-disk format (format.py), a registry of names, and builders per source."""
from .format import SAMPLE_COLUMNS, SPLITS, DatasetFormatError, IALDataset, read_dataset, write_dataset
from .registry import DATASETS, build_dataset, build_embedded, dataset_dir, dataset_names, load_dataset

__all__ = [
    "SAMPLE_COLUMNS", "SPLITS", "DatasetFormatError", "IALDataset", "read_dataset", "write_dataset",
    "DATASETS", "build_dataset", "build_embedded", "dataset_dir", "dataset_names", "load_dataset",
]
