"""Putting a run to work: candidate ranking and content similarity (API, CLI), and the HTTP
server started as a real process and called over HTTP with httpx."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import app
from dgl_synergraph import build_config, load_run
from dgl_synergraph.errors import DataError
from dgl_synergraph.training import train
from conftest import child_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """MGCN on the embedded sample (raw ids, two modalities), two epochs."""
    out = tmp_path_factory.mktemp("serve") / "mgcn"
    config = build_config({"dataset": "sample", "model": "mgcn", "embedding_dim": 16, "epochs": 2,
                           "finetune_features": False})
    train(config, out=out, progress=False)
    return out


def test_rank_orders_the_candidates_by_the_models_scores(sample_run):
    run = load_run(sample_run)
    user, candidates = "3", [str(i) for i in run.dataset.raw_item_ids[20:60]]
    scores = run.score([user], candidates)[0]
    ranked = run.rank(user, candidates)
    assert ranked.items == [candidates[i] for i in np.argsort(-scores, kind="stable")]
    assert ranked.scores == sorted(ranked.scores, reverse=True)
    assert run.rank(user, candidates, k=5).items == ranked.items[:5]
    seen = set(run.item_ids(run.dataset.csr("train")[run.user_index([user])[0][0]].indices))
    with_seen = candidates[:5] + sorted(seen)
    kept = run.rank(user, with_seen, exclude_seen=True).items
    assert set(kept) == set(candidates[:5]) and seen
    with pytest.raises(DataError, match="unknown item 'nope'"):
        run.rank(user, ["nope"])
    with pytest.raises(DataError, match="only once"):
        run.rank(user, candidates[:2] * 2)


def test_similar_items_are_the_nearest_by_mean_cosine_over_modalities(sample_run):
    run = load_run(sample_run)
    data = run.dataset
    query = 7
    similarity = np.zeros(data.n_items)
    for table in data.features.values():  # brute force, float64
        table = table.astype(np.float64)
        unit = table / np.linalg.norm(table, axis=1, keepdims=True)
        similarity += unit @ unit[query] / len(data.features)
    similarity[query] = -np.inf
    expected = np.argsort(-similarity, kind="stable")[:5]
    got = run.similar_items(query, k=5, ids="internal")
    assert got.items == expected.tolist()
    np.testing.assert_allclose(got.scores, similarity[expected], rtol=1e-5)
    assert run.similar_items(str(data.raw_item_ids[query]), k=5).items == [data.raw_item_ids[i] for i in expected]


def test_recommend_candidates_file_on_the_command_line(sample_run, tmp_path):
    run = load_run(sample_run)
    candidates = [str(i) for i in run.dataset.raw_item_ids[100:130]]
    path = tmp_path / "candidates.txt"
    path.write_text("\n".join(candidates) + "\n\n")
    result = CliRunner().invoke(app, ["recommend", "--run", str(sample_run), "--user", "3", "--k", "4",
                                      "--candidates", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert '"items": ' + str(run.rank("3", candidates, k=4, exclude_seen=True).items).replace("'", '"') in result.output
    path.write_text("\n \n")
    empty = CliRunner().invoke(app, ["recommend", "--run", str(sample_run), "--user", "3", "--candidates", str(path)])
    assert empty.exit_code != 0 and f"Error: --candidates {path}: no item ids" in empty.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(sample_run):
    port = _free_port()
    env = child_env()
    process = subprocess.Popen([sys.executable, "-c", "from cli.main import main; main()", "serve",
                                "--run", str(sample_run), "--port", str(port), "--device", "cpu"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the server did not start:\n{process.communicate()[0]}")
        time.sleep(0.3)
    yield base, process, port
    if process.poll() is None:
        process.kill()
        process.wait()


def test_the_server_answers_as_the_python_api(server, sample_run):
    base, _, _ = server
    run = load_run(sample_run)
    health = httpx.get(f"{base}/health").json()
    assert health == {"status": "ok", "run": str(sample_run), "model": "mgcn", "dataset": "sample",
                      "users": run.dataset.n_users, "items": run.dataset.n_items}
    reply = httpx.post(f"{base}/recommend", json={"users": ["3", 8], "k": 20})
    assert reply.status_code == 200
    expected = [rec.as_dict() for rec in run.recommend(["3", "8"], k=20)]
    got = reply.json()["recommendations"]
    assert [r["items"] for r in got] == [e["items"] for e in expected]
    np.testing.assert_allclose([r["scores"] for r in got], [e["scores"] for e in expected], rtol=1e-5)
    assert [r["user"] for r in got] == ["3", 8]  # echoed as sent

    candidates = [str(i) for i in run.dataset.raw_item_ids[:50]]
    ranked = httpx.post(f"{base}/recommend", json={"users": ["3"], "k": 5, "candidates": candidates}).json()
    assert ranked["recommendations"][0]["items"] == run.rank("3", candidates, k=5, exclude_seen=True).items

    item = str(run.dataset.raw_item_ids[7])
    similar = httpx.get(f"{base}/items/{item}/similar", params={"k": 4}).json()
    assert similar["item"] == item and similar["similar"] == run.similar_items(item, k=4).items

    popular = httpx.post(f"{base}/recommend", json={"users": ["no-such-user"], "k": 3, "fallback": "popular"}).json()
    assert popular["recommendations"][0]["fallback"] is True
    assert httpx.get(f"{base}/docs").status_code == 200
    assert "/recommend" in httpx.get(f"{base}/openapi.json").json()["paths"]


def test_new_items_posted_to_the_server_are_recommended(server, sample_run):
    base, _, _ = server
    run = load_run(sample_run)
    features = {m: f[[7, 8]].tolist() for m, f in run.dataset.features.items()}
    body = {"items": [{"id": "NEW-A", "features": {m: v[0] for m, v in features.items()}},
                      {"id": "NEW-B", "features": {m: v[1] for m, v in features.items()}}]}
    reply = httpx.post(f"{base}/items", json=body)
    assert reply.status_code == 201, reply.text
    assert reply.json() == {"added": ["NEW-A", "NEW-B"], "items": run.dataset.n_items + 2}
    expected = run.add_items({m: np.array(v) for m, v in features.items()}, ids=["NEW-A", "NEW-B"])
    ranked = httpx.post(f"{base}/recommend", json={"users": ["3"], "candidates": ["NEW-A", "NEW-B"], "k": 2}).json()
    assert ranked["recommendations"][0]["items"] == run.rank("3", expected, k=2).items
    np.testing.assert_allclose(ranked["recommendations"][0]["scores"], run.rank("3", expected, k=2).scores, rtol=1e-5)
    assert httpx.get(f"{base}/health").json()["items"] == run.dataset.n_items + 2
    again = httpx.post(f"{base}/items", json=body)
    assert again.status_code == 422 and "already taken" in again.json()["detail"]
    wrong = {"items": [{"id": "NEW-C", "features": {"image": [1.0, 2.0], "text": features["text"][0]}}]}
    assert httpx.post(f"{base}/items", json=wrong).status_code == 422
    ragged = {"items": [{"id": "NEW-D", "features": {m: v[0] for m, v in features.items()}},
                        {"id": "NEW-E", "features": {m: v[1][:5] for m, v in features.items()}}]}
    reply = httpx.post(f"{base}/items", json=ragged)
    assert reply.status_code == 422 and "rows of equal length" in reply.json()["detail"]


@pytest.mark.parametrize("method, path, body, status, detail", [
    ("post", "/recommend", {"users": ["no-such-user"], "k": 3}, 404, "unknown user 'no-such-user'"),
    ("post", "/recommend", {"users": ["3"], "k": 3, "candidates": ["nope"]}, 404, "unknown item 'nope'"),
    ("get", "/items/nope/similar", None, 404, "unknown item 'nope'"),
    ("post", "/recommend", {"users": ["3"], "k": 10**9}, 422, "k: at most the number of items"),
    ("post", "/recommend", {"users": ["3"], "k": 0}, 422, "greater than or equal to 1"),
    ("post", "/recommend", {"users": [], "k": 3}, 422, "at least 1 item"),
    ("post", "/recommend", {"users": ["3"], "k": 3, "path": "/etc/passwd"}, 422, "Extra inputs"),
    ("post", "/recommend", {"users": [{"a": 1}]}, 422, "valid"),
    ("post", "/recommend", "not json", 422, "JSON decode error"),
    ("get", "/items/..%2F..%2Fetc%2Fpasswd/similar", None, 404, "Not Found"),
    ("get", "/items/3/similar?k=-1", None, 422, "greater than or equal to 1"),
])
def test_bad_requests_get_a_json_error_and_the_server_lives_on(server, method, path, body, status, detail):
    base, process, _ = server
    if isinstance(body, str):
        reply = httpx.post(f"{base}{path}", content=body, headers={"content-type": "application/json"})
    else:
        reply = getattr(httpx, method)(f"{base}{path}", **({"json": body} if body is not None else {}))
    assert reply.status_code == status
    assert detail in str(reply.json()["detail"])
    assert process.poll() is None and httpx.get(f"{base}/health").status_code == 200


def test_a_port_in_use_is_an_error_line(server, sample_run):
    _, _, port = server
    result = CliRunner().invoke(app, ["serve", "--run", str(sample_run), "--port", str(port)])
    assert result.exit_code != 0
    assert f"Error: --host 127.0.0.1 --port {port}: cannot listen there" in result.output
    assert "Traceback" not in result.output


def test_sigterm_stops_the_server_cleanly(server):
    base, process, _ = server
    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -SIGTERM)
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/health", timeout=2)


def test_the_load_test_prints_its_table(sample_run):
    result = subprocess.run([sys.executable, "-m", "benchmarks.serve", "--run", str(sample_run), "--requests", "20",
                             "--concurrency", "1", "2"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, DGLBACKEND="pytorch"))
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0:2] for row in rows] == [["| 1", "20"], ["| 2", "20"]]
