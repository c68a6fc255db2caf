"""Load and validate a dataset folder in the MMRec layout.

A folder ``NAME/`` holds ``NAME.inter`` (tab-separated, header with at least ``userID itemID
x_label``; x_label 0/1/2 = train/valid/test) and zero or more ``<modality>_feat.npy`` matrices
whose row i belongs to item i. Every problem is reported as one :class:`DataError` line naming
the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import polars as pl

from dgl_synergraph.data.dataset import Dataset
from dgl_synergraph.errors import DataError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("userID", "itemID", "x_label")
FEATURE_SUFFIX = "_feat.npy"
# The embedded sample ships inside the repository, next to the library.
EMBEDDED_DATA_DIR = Path(__file__).resolve().parents[2] / "datasets"


def default_data_dir() -> Path:
    return Path(os.environ.get("SYNERGRAPH_DATA", "data"))


def resolve_dataset_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """``NAME`` -> ``<data_dir>/NAME``; falls back to the embedded datasets (e.g. ``sample``)."""
    if not name or "/" in name or name.startswith("."):
        raise DataError(f"--dataset: {name!r} is not a dataset name (use --data-dir for paths)")
    base = Path(data_dir) if data_dir is not None else default_data_dir()
    for candidate in (base / name, EMBEDDED_DATA_DIR / name):
        if (candidate / f"{name}.inter").is_file():
            return candidate
    known = ", ".join(sorted(d["name"] for d in list_datasets(base))) or "none"
    raise DataError(f"--dataset: no dataset {name!r} in {base} (expected {base / name / (name + '.inter')}); available: {known}")


def list_datasets(data_dir: str | Path | None = None) -> list[dict]:
    """Datasets found in ``data_dir`` and the embedded folder, with cheap statistics."""
    base = Path(data_dir) if data_dir is not None else default_data_dir()
    seen: dict[str, dict] = {}
    for root in (base, EMBEDDED_DATA_DIR):
        if not root.is_dir():
            continue
        for sub in sorted(root.iterdir()):
            inter = sub / f"{sub.name}.inter"
            if sub.name in seen or not inter.is_file():
                continue
            try:
                frame = _read_interactions(inter)
                counts = frame.group_by("x_label").len().sort("x_label")
                users = int(frame["userID"].max()) + 1
                items = int(frame["itemID"].max()) + 1
            except DataError as err:
                seen[sub.name] = {"name": sub.name, "path": str(sub), "error": str(err)}
                continue
            by_label = dict(zip(counts["x_label"].to_list(), counts["len"].to_list()))
            seen[sub.name] = {
                "name": sub.name,
                "path": str(sub),
                "users": users,
                "items": items,
                "interactions": int(sum(by_label.values())),
                "train": int(by_label.get(0, 0)),
                "valid": int(by_label.get(1, 0)),
                "test": int(by_label.get(2, 0)),
                "modalities": sorted(
                    p.name[: -len(FEATURE_SUFFIX)] for p in sub.glob(f"*{FEATURE_SUFFIX}")
                ),
            }
    return list(seen.values())


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _read_interactions(path: Path) -> pl.DataFrame:
    """Read and validate the three required columns of an ``.inter`` file."""
    try:
        with open(path, encoding="utf-8") as handle:
            header = handle.readline().rstrip("\r\n").split("\t")
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(
            f"{path}: header must be tab-separated and contain {' '.join(REQUIRED_COLUMNS)}; "
            f"missing {', '.join(missing)} (found: {' '.join(header)[:120]})"
        )
    try:
        frame = pl.read_csv(
            path,
            separator="\t",
            columns=list(REQUIRED_COLUMNS),
            schema_overrides={c: pl.Utf8 for c in REQUIRED_COLUMNS},
            quote_char=None,
        )
    except (pl.exceptions.PolarsError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: cannot parse as tab-separated values ({first})") from None
    if frame.height == 0:
        raise DataError(f"{path}: no interactions")
    parsed = {}
    for column in REQUIRED_COLUMNS:
        values = frame[column].str.strip_chars().cast(pl.Int64, strict=False)
        bad = values.is_null() | (values < 0)
        if bad.any():
            row = int(bad.arg_max())
            raise DataError(
                f"{path} line {row + 2}: {column} {frame[column][row]!r} is not a non-negative integer"
            )
        parsed[column] = values
    out = pl.DataFrame(parsed)
    bad_label = ~out["x_label"].is_in([0, 1, 2])
    if bad_label.any():
        row = int(bad_label.arg_max())
        raise DataError(
            f"{path} line {row + 2}: x_label {out['x_label'][row]} outside 0..2 (0=train, 1=valid, 2=test)"
        )
    return out


def load_features(path: Path, n_items: int) -> np.ndarray:
    """One modality matrix as float32, checked for shape, dtype and finite values."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable .npy array ({err})") from None
    if array.ndim != 2:
        raise DataError(f"{path}: expected a 2-D matrix (items x features), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path}: expected a float matrix, got dtype {array.dtype}")
    if array.shape[0] != n_items:
        raise DataError(
            f"{path}: has {array.shape[0]} rows but the interactions name {n_items} items "
            f"(row i must belong to item id i)"
        )
    out = np.array(array, dtype=np.float32)  # an in-memory, writable copy (the file is memory-mapped)
    finite = np.isfinite(out)
    if not finite.all():
        row = int(np.argwhere(~finite)[0, 0])
        raise DataError(f"{path}: row {row} (item {row}) contains NaN or infinite values")
    return out


def load_dataset(
    name: str | None = None,
    data_dir: str | Path | None = None,
    path: str | Path | None = None,
    modalities: list[str] | None = None,
) -> Dataset:
    """Load ``<data_dir>/<name>`` (or an explicit folder ``path``) and validate it.

    ``modalities`` restricts which ``*_feat.npy`` files are read (default: all found).
    """
    folder = Path(path) if path is not None else resolve_dataset_dir(name or "", data_dir)
    name = name or folder.name
    inter_path = folder / f"{folder.name}.inter"
    if not inter_path.is_file():
        raise DataError(f"{inter_path}: no such file")
    frame = _read_interactions(inter_path)

    duplicated = frame.select(["userID", "itemID"]).is_duplicated()
    if duplicated.any():
        row = int(duplicated.arg_max())
        raise DataError(
            f"{inter_path} line {row + 2}: duplicate (userID, itemID) pair "
            f"({frame['userID'][row]}, {frame['itemID'][row]})"
        )
    n_users = int(frame["userID"].max()) + 1
    n_items = int(frame["itemID"].max()) + 1

    pairs = {
        split: frame.filter(pl.col("x_label") == label).select(["userID", "itemID"]).to_numpy().astype(np.int64)
        for label, split in enumerate(("train", "valid", "test"))
    }
    if len(pairs["train"]) == 0:
        raise DataError(f"{inter_path}: no training interactions (x_label 0)")

    # MMRec drops valid/test users that never appear in training (cold-start users).
    has_train = np.zeros(n_users, dtype=bool)
    has_train[pairs["train"][:, 0]] = True
    dropped = {}
    for split in ("valid", "test"):
        keep = has_train[pairs[split][:, 0]]
        dropped[split] = int(len(np.unique(pairs[split][~keep, 0])))
        if dropped[split]:
            log.info("%s: dropped %d %s users with no training interaction", name, dropped[split], split)
        pairs[split] = pairs[split][keep]

    checksums = {inter_path.name: file_sha256(inter_path)}
    feature_paths = sorted(folder.glob(f"*{FEATURE_SUFFIX}"))
    available = {p.name[: -len(FEATURE_SUFFIX)]: p for p in feature_paths}
    wanted = sorted(available) if modalities is None else list(modalities)
    unknown = [m for m in wanted if m not in available]
    if unknown:
        raise DataError(
            f"{folder}: no feature file for modality {', '.join(unknown)} "
            f"(found: {', '.join(sorted(available)) or 'none'})"
        )
    features = {}
    for modality in wanted:
        features[modality] = load_features(available[modality], n_items)
        checksums[available[modality].name] = file_sha256(available[modality])

    raw_users = _read_id_mapping(folder / "u_id_mapping.csv", n_users)
    raw_items = _read_id_mapping(folder / "i_id_mapping.csv", n_items)
    if raw_users is not None:
        checksums["u_id_mapping.csv"] = file_sha256(folder / "u_id_mapping.csv")
    if raw_items is not None:
        checksums["i_id_mapping.csv"] = file_sha256(folder / "i_id_mapping.csv")

    return Dataset(
        name=name,
        n_users=n_users,
        n_items=n_items,
        train=pairs["train"],
        valid=pairs["valid"],
        test=pairs["test"],
        features=features,
        path=folder.resolve(),
        checksums=checksums,
        dropped_cold_users=dropped,
        raw_user_ids=raw_users,
        raw_item_ids=raw_items,
    )


def _read_id_mapping(path: Path, size: int) -> np.ndarray | None:
    """Optional ``raw_id<TAB>internal_id`` file -> array of raw ids indexed by internal id."""
    if not path.is_file():
        return None
    try:
        frame = pl.read_csv(path, separator="\t", infer_schema_length=0, quote_char=None)
    except pl.exceptions.PolarsError as err:
        raise DataError(f"{path}: cannot parse id mapping ({str(err).splitlines()[0]})") from None
    if frame.width < 2:
        raise DataError(f"{path}: expected two tab-separated columns (raw id, internal id)")
    raw = frame[:, 0]
    internal = frame[:, 1].cast(pl.Int64, strict=False)
    if internal.is_null().any() or (internal < 0).any() or (internal >= size).any():
        raise DataError(f"{path}: column {frame.columns[1]!r} must hold internal ids in 0..{size - 1}")
    out = np.empty(size, dtype=object)
    out[:] = None
    out[internal.to_numpy()] = raw.to_numpy()
    return out


NEW_ITEM_IDS = "ids.txt"


def read_new_items(folder: str | Path, modalities: list[str], raw_ids: bool) -> tuple[dict[str, np.ndarray], list | None]:
    """Items outside a trained catalogue, from a folder: ``<modality>_feat.npy`` for the
    ``modalities`` present, and their ids in ``ids.txt`` (one per line) or ``i_id_mapping.csv``
    (a ``preprocess`` folder). Ids are required when ``raw_ids`` (the run's dataset has them)."""
    folder = Path(folder)
    present = [m for m in modalities if (folder / f"{m}_feat.npy").is_file()]
    if not present:
        raise DataError(f"{folder}: no feature file ({', '.join(f'{m}_feat.npy' for m in modalities)})")
    features = {}
    for m in present:
        path = folder / f"{m}_feat.npy"
        try:
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: not a readable .npy array ({err})") from None
        features[m] = load_features(path, shape[0] if shape else 0)
        if len(features[m]) != len(features[present[0]]):
            raise DataError(f"{path}: has {len(features[m])} rows but {present[0]}_feat.npy has "
                            f"{len(features[present[0]])} (one row per new item in each file)")
    n_rows = len(features[present[0]])
    ids = None
    if (folder / NEW_ITEM_IDS).is_file():
        ids = [line.strip() for line in (folder / NEW_ITEM_IDS).read_text(encoding="utf-8").splitlines() if line.strip()]
    elif (folder / "i_id_mapping.csv").is_file():
        ids = [str(i) for i in _read_id_mapping(folder / "i_id_mapping.csv", n_rows)]
    if raw_ids and ids is None:
        raise DataError(f"{folder}: no {NEW_ITEM_IDS} (one item id per line) or i_id_mapping.csv")
    if ids is not None and len(ids) != n_rows:
        raise DataError(f"{folder / NEW_ITEM_IDS}: {len(ids)} ids for {n_rows} feature rows")
    return features, ids
