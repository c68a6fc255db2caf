"""The embedded default dataset ships with the repository and loads without ../shared/data."""

from dgl_synergraph.data import load_dataset, resolve_dataset_dir
from dgl_synergraph.data.loader import EMBEDDED_DATA_DIR


def test_sample_is_embedded_small_and_valid(tmp_path):
    folder = resolve_dataset_dir("sample", tmp_path)  # empty data dir: falls back to datasets/
    assert folder == EMBEDDED_DATA_DIR / "sample"
    assert sum(p.stat().st_size for p in folder.iterdir()) < 5_000_000
    data = load_dataset("sample", tmp_path)
    assert data.n_items == 1500 and data.n_users > 5000
    assert data.modalities == ["image", "text"]
    assert data.raw_item_ids is not None and data.raw_item_ids[0] is not None
