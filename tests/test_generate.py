"""`synergraph generate`: exact sizes, power-law degrees, clusters shared by interactions and
features, and bad input."""

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import app
from dgl_synergraph.data import load_dataset
from dgl_synergraph.data.generate import GenerateSpec, generate


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "synth"
    result = CliRunner().invoke(app, ["generate", "--users", "2000", "--items", "1000", "--interactions", "24000",
                                      "--image-dim", "24", "--text-dim", "12", "--clusters", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_sizes_are_exact_and_the_folder_loads(generated):
    out, output = generated
    assert "2,000 users, 1,000 items, 24,000 interactions in 4 clusters" in output
    data = load_dataset("synth", path=out)
    assert data.features["image"].shape == (1000, 24) and data.features["text"].shape == (1000, 12)
    assert len(data.train) + len(data.valid) + len(data.test) + sum(data.dropped_cold_users.values()) == 24000
    pairs = np.concatenate([data.train, data.valid, data.test])
    assert len({(u, i) for u, i in pairs}) == len(pairs)  # distinct pairs
    assert set(np.unique(pairs[:, 1])) <= set(range(1000)) and len(np.unique(data.train[:, 1])) > 950


def test_degrees_are_skewed_and_at_least_the_minimum(generated):
    out, _ = generated
    inter = np.loadtxt(out / "synth.inter", skiprows=1, dtype=np.int64)
    users = np.bincount(inter[:, 0], minlength=2000)
    items = np.bincount(inter[:, 1], minlength=1000)
    assert users.min() >= 5 and items.min() >= 1
    assert users.max() > 4 * np.median(users) and items.max() > 4 * np.median(items)  # power-law tails


def test_interactions_and_features_share_the_clusters(generated):
    """Items a user interacted with are closer in feature space than random item pairs."""
    out, _ = generated
    inter = np.loadtxt(out / "synth.inter", skiprows=1, dtype=np.int64)
    feats = np.load(out / "image_feat.npy")
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    pairs = inter[np.argsort(inter[:, 0], kind="stable"), :2]
    same_user = [(a, b) for (ua, a), (ub, b) in zip(pairs[:-1], pairs[1:]) if ua == ub]
    co = np.mean([unit[a] @ unit[b] for a, b in same_user])
    random = np.mean([unit[a] @ unit[b] for a, b in rng.integers(1000, size=(2000, 2))])
    assert co > random + 0.2


def test_same_seed_same_dataset(tmp_path):
    spec = GenerateSpec(users=100, items=50, interactions=800, modalities={"image": 4}, seed=3)
    generate(tmp_path / "a", spec)
    generate(tmp_path / "b", spec)
    assert (tmp_path / "a" / "a.inter").read_text() == (tmp_path / "b" / "b.inter").read_text()
    assert np.array_equal(np.load(tmp_path / "a" / "image_feat.npy"), np.load(tmp_path / "b" / "image_feat.npy"))


@pytest.mark.parametrize("args, message", [
    (["--users", "10", "--items", "5", "--interactions", "20"], "--interactions: need at least 55"),
    (["--users", "10", "--items", "50"], "give --interactions"),
    (["--users", "1", "--items", "50", "--interactions", "60"], "--users: need at least 2"),
    (["--users", "100", "--items", "50", "--interactions", "700", "--image-dim", "-3"], "--image-dim: must be positive"),
])
def test_bad_sizes_are_one_error_line_and_no_output(tmp_path, args, message):
    result = CliRunner().invoke(app, ["generate", "--out", str(tmp_path / "x"), *args])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], result.output
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


def test_the_folder_and_files_have_normal_permissions(generated):
    from dgl_synergraph.utils import umask

    out, _ = generated
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask()
    assert (out / "synth.inter").stat().st_mode & 0o777 == 0o666 & ~umask()
