"""Datasets: the in-memory container, the MMRec-layout loader, synthetic data for tests."""

from dgl_synergraph.data.dataset import Dataset
from dgl_synergraph.data.loader import list_datasets, load_dataset, resolve_dataset_dir

__all__ = ["Dataset", "list_datasets", "load_dataset", "resolve_dataset_dir"]
