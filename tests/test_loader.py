"""The MMRec-layout loader: what it accepts and one clear error per bad input."""

import numpy as np
import pytest

from dgl_synergraph.data import list_datasets, load_dataset, resolve_dataset_dir
from dgl_synergraph.errors import DataError


def write(folder, inter: str, **features):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{folder.name}.inter").write_text(inter)
    for name, array in features.items():
        np.save(folder / f"{name}_feat.npy", array)
    return folder


GOOD = "userID\titemID\tx_label\trating\n0\t0\t0\t5\n0\t1\t1\t4\n1\t1\t0\t3\n1\t2\t2\t5\n2\t0\t2\t1\n"


def test_loads_splits_features_and_drops_cold_users(tmp_path):
    folder = write(tmp_path / "d", GOOD, image=np.ones((3, 4), np.float16), text=np.zeros((3, 2), np.float32))
    data = load_dataset(path=folder)
    assert (data.n_users, data.n_items) == (3, 3)
    assert data.train.tolist() == [[0, 0], [1, 1]]
    assert data.valid.tolist() == [[0, 1]]
    assert data.test.tolist() == [[1, 2]]  # user 2 has no train interaction: dropped
    assert data.dropped_cold_users == {"valid": 0, "test": 1}
    assert data.modalities == ["image", "text"]
    assert data.features["image"].dtype == np.float32 and data.features["image"].shape == (3, 4)
    assert set(data.checksums) == {"d.inter", "image_feat.npy", "text_feat.npy"}
    assert load_dataset(path=folder, modalities=["text"]).modalities == ["text"]


@pytest.mark.parametrize(
    "inter, message",
    [
        ("user\titemID\tx_label\n0\t0\t0\n", "missing userID"),
        ("userID,itemID,x_label\n0,0,0\n", "missing userID, itemID, x_label"),
        ("userID\titemID\tx_label\n0\tabc\t0\n", "line 2: itemID 'abc' is not a non-negative integer"),
        ("userID\titemID\tx_label\n0\t1\t0\n-1\t0\t0\n", "line 3: userID '-1' is not a non-negative integer"),
        ("userID\titemID\tx_label\n0\t1\t0\n0\t0\t3\n", "line 3: x_label 3 outside 0..2"),
        ("userID\titemID\tx_label\n0\t1\t0\n0\t1\t1\n", "duplicate (userID, itemID) pair (0, 1)"),
        ("userID\titemID\tx_label\n0\t1\t1\n", "no training interactions"),
        ("userID\titemID\tx_label\n", "no interactions"),
        ("userID\titemID\tx_label\n0\t1.5\t0\n", "itemID '1.5' is not a non-negative integer"),
    ],
)
def test_bad_interactions_name_the_file_and_problem(tmp_path, inter, message):
    folder = write(tmp_path / "bad", inter)
    with pytest.raises(DataError) as err:
        load_dataset(path=folder)
    assert "bad.inter" in str(err.value)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.ones((2, 4), np.float32), "has 2 rows but the interactions name 3 items"),
        (np.ones(3, np.float32), "expected a 2-D matrix"),
        (np.ones((3, 4), np.int64), "expected a float matrix"),
        (np.array([[1.0, 0], [np.nan, 1], [0, 0]], np.float32), "row 1 (item 1) contains NaN or infinite"),
        (np.array([[1.0, 0], [0, 1], [np.inf, 0]], np.float16), "row 2 (item 2) contains NaN or infinite"),
    ],
)
def test_bad_features_name_the_file_and_problem(tmp_path, array, message):
    folder = write(tmp_path / "d", GOOD, image=array)
    with pytest.raises(DataError) as err:
        load_dataset(path=folder)
    assert "image_feat.npy" in str(err.value) and message in str(err.value)


def test_unreadable_feature_file_and_missing_modality(tmp_path):
    folder = write(tmp_path / "d", GOOD)
    (folder / "image_feat.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="image_feat.npy: not a readable .npy array"):
        load_dataset(path=folder)
    (folder / "image_feat.npy").unlink()
    with pytest.raises(DataError, match="no feature file for modality audio"):
        load_dataset(path=folder, modalities=["audio"])


def test_dataset_lookup_by_name(tmp_path, monkeypatch):
    write(tmp_path / "mine", GOOD)
    assert resolve_dataset_dir("mine", tmp_path) == tmp_path / "mine"
    monkeypatch.setenv("SYNERGRAPH_DATA", str(tmp_path))
    assert resolve_dataset_dir("mine") == tmp_path / "mine"
    with pytest.raises(DataError, match="no dataset 'other'.*available: mine"):
        resolve_dataset_dir("other", tmp_path)
    listing = {d["name"]: d for d in list_datasets(tmp_path)}
    assert listing["mine"]["interactions"] == 5 and listing["mine"]["train"] == 2
    assert "sample" in listing  # the embedded default is always listed


def test_id_mappings_are_read(tmp_path):
    folder = write(tmp_path / "d", GOOD)
    (folder / "i_id_mapping.csv").write_text("asin\titemID\nB0\t0\nB1\t1\nB2\t2\n")
    data = load_dataset(path=folder)
    assert data.raw_item_ids.tolist() == ["B0", "B1", "B2"]
    (folder / "i_id_mapping.csv").write_text("asin\titemID\nB0\t7\n")
    with pytest.raises(DataError, match="i_id_mapping.csv"):
        load_dataset(path=folder)
