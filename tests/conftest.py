import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("DGLBACKEND", "pytorch")
if os.environ.get("SYNERGRAPH_HIDE_DGL"):
    # Every 'import dgl' raises ImportError: the suite runs as on a machine without DGL
    # (tests that compare against DGL skip; everything else runs on the torch backend).
    sys.modules["dgl"] = None

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python running this checkout: the repository first on its
    path, whatever PYTHONPATH already held after it (packages installed with --target)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, DGLBACKEND="pytorch", PYTHONPATH=path, **extra)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A folder holding the clustered synthetic dataset ``tiny`` (120 users, 80 items)."""
    from dgl_synergraph.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("data")
    write_synthetic_dataset(root / "tiny")
    return root


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    from dgl_synergraph.data import load_dataset

    return load_dataset("tiny", tiny_dir)


def shared_dataset_dir(name: str) -> Path:
    folder = SHARED_DATA / name
    if not (folder / f"{name}.inter").is_file():
        pytest.skip(f"{folder} not available")
    return folder
