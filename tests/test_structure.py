"""One place for each fact: hyperparameters only in model constructors, graph recipes in graphs/,
imports flowing one way, and a CLI that starts without torch."""

import ast
import inspect
import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli.main import app
from dgl_synergraph import build_config
from dgl_synergraph.config import RunConfig
from dgl_synergraph.errors import ConfigError
from dgl_synergraph.models.hyperparams import docstring_args
from dgl_synergraph.models.registry import MODELS, ModelEntry, build_model, resolve_model_params

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "dgl_synergraph"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_registry_reads_each_constructor_exactly(name):
    """The source reader agrees with Python's own view of the imported class, and every
    hyperparameter has a typed annotation, a default and a doc line."""
    entry = MODELS[name]
    cls = entry.model_class()
    read = entry.hyperparameters
    own = {p.name: p for p in inspect.signature(cls.__init__).parameters.values() if p.kind is p.KEYWORD_ONLY}
    for key, parameter in own.items():
        assert read[key].default == parameter.default and type(read[key].default) is type(parameter.default)
    inherited = set(read) - set(own)
    if inherited:  # SynerGraph: the rest comes from MGCN through **kwargs
        base = cls.__mro__[1]
        base_own = {p.name: p.default for p in inspect.signature(base.__init__).parameters.values()
                    if p.kind is p.KEYWORD_ONLY}
        assert {k: read[k].default for k in inherited} == {k: base_own[k] for k in inherited}
    for hp in read.values():
        assert hp.doc, f"{name}.{hp.name} has no doc line"


def test_no_registry_entry_declares_a_default_of_its_own():
    entry_fields = {f for f in ModelEntry.__dataclass_fields__}
    assert entry_fields == {"name", "model", "graphs", "run_defaults", "dataset_defaults"}
    run_fields = set(RunConfig.model_fields)
    for entry in MODELS.values():
        assert set(entry.run_defaults) <= run_fields
        for values in entry.dataset_defaults.values():
            assert set(values) <= set(entry.hyperparameters), entry.name
        recipe = inspect.signature(entry.recipe()).parameters.values()
        graph_params = [p for p in recipe if p.name not in ("dataset", "device")]
        for p in graph_params:  # a recipe reads graph settings from the constructor, never defaults them
            assert p.default is inspect.Parameter.empty, f"{entry.graphs}.{p.name} has a default"
            assert p.name in entry.hyperparameters, f"{entry.graphs}.{p.name} is not a {entry.name} hyperparameter"


def test_resolved_hyperparameters_reach_the_model(tiny):
    """SynerGraph's own defaults (not MGCN's) and the per-dataset table are what the model gets."""
    model = build_model("synergraph", tiny, {"knn_k": 5}, torch.device("cpu"))
    assert model.cl_weight == 0.0 and model.circle_weight == 0.001
    assert not isinstance(next(iter(model.projections.values())).features, torch.nn.Parameter)  # frozen
    mgcn = build_model("mgcn", tiny, {"knn_k": 5}, torch.device("cpu"))
    assert mgcn.cl_weight == 0.01 and isinstance(next(iter(mgcn.projections.values())).features, torch.nn.Parameter)
    assert build_config({"dataset": "baby", "model": "synergraph"}).model_params["knn_k"] == 10
    assert build_config({"dataset": "tiny", "model": "synergraph"}).model_params["knn_k"] == 30


def test_types_come_from_annotations():
    assert resolve_model_params("synergraph", {"circle_weight": 0})["circle_weight"] == 0.0
    assert isinstance(resolve_model_params("synergraph", {"circle_weight": 0})["circle_weight"], float)
    with pytest.raises(ConfigError, match="synergraph.circle_on: expected one of user_fused, purifier"):
        resolve_model_params("synergraph", {"circle_on": "users"})
    with pytest.raises(ConfigError, match="mgcn.purifier: expected bool, got 1"):
        resolve_model_params("mgcn", {"purifier": 1})
    with pytest.raises(ConfigError, match="lightgcn.n_layers: expected int, got 2.5"):
        resolve_model_params("lightgcn", {"n_layers": 2.5})
    with pytest.raises(ConfigError, match="did you mean 'n_layers'"):
        resolve_model_params("lightgcn", {"n_layer": 2})


def test_docstring_args_section_parsing():
    doc = """Summary.

    Args:
        alpha: first line
            continued here.
        beta (int): second.

    Returns:
        nothing
    """
    assert docstring_args(inspect.cleandoc(doc)) == {"alpha": "first line continued here.", "beta": "second."}


def test_a_bad_hyperparameter_value_leaves_no_run_directory(tiny_dir, tmp_path):
    out = tmp_path / "bad"
    result = CliRunner().invoke(app, ["train", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--model", "synergraph",
                                      "--set", "circle_margin=2", "--set", "knn_k=5", "--out", str(out)])
    assert result.exit_code == 1 and "circle_margin: must be in [0, 1)" in result.output
    assert not out.exists()


def test_runs_from_before_the_move_still_load():
    old = {"dataset": "tiny", "model": "lightgcn", "embedding_dim": 16, "reg_weight": 0.001,
           "model_params": {"n_layers": 2}}
    config = RunConfig.from_saved(old)
    assert config.model_params == {"embedding_dim": 16, "reg_weight": 0.001, "n_layers": 2}


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_data_flows_one_way():
    for path in LIBRARY.rglob("*.py"):
        modules = _imports(path)
        assert not any(m == "cli" or m.startswith("cli.") for m in modules), f"{path} imports the CLI"
    config_imports = _imports(LIBRARY / "config.py")
    assert not any(m.startswith("dgl_synergraph.models") for m in config_imports)
    for path in (LIBRARY / "models").glob("*.py"):  # models take tensors and graphs, not configs or files
        modules = _imports(path)
        assert not {"dgl_synergraph.config", "dgl_synergraph.data.loader", "dgl_synergraph.training"} & modules, path
    for path in (LIBRARY / "evaluation").glob("*.py"):  # the evaluator takes scores, not models
        assert not any(m.startswith("dgl_synergraph.models") for m in _imports(path)), path


def test_every_module_imports_on_its_own():
    """No import cycle: each module imports first in a fresh set of project modules."""
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for base in (LIBRARY, ROOT / "cli") for p in base.rglob("*.py"))
    script = f"""
import importlib, sys
failed = []
for name in {modules!r}:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("dgl_synergraph", "cli")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as err:
        failed.append(f"{{name}}: {{type(err).__name__}}: {{err}}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_help_and_models_start_without_torch():
    script = """
import sys
from click.testing import CliRunner
from cli.main import app
for args in (["--help"], ["models"], ["train", "--help"], ["eval", "--help"]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
print(sorted(m for m in ("torch", "dgl") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DGLBACKEND": "pytorch"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_eval_and_recommend_default_to_the_latest_run(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNERGRAPH_RUNS", str(tmp_path / "runs"))
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "--k", "20"])
    assert result.exit_code == 1 and "no run directory under" in result.output
    common = ["train", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--epochs", "2", "--quiet",
              "--set", "embedding_dim=8"]
    assert runner.invoke(app, common + ["--model", "bpr"]).exit_code == 0
    assert runner.invoke(app, common + ["--model", "lightgcn", "--out", str(tmp_path / "runs" / "nested" / "last")]
                         ).exit_code == 0
    latest = tmp_path / "runs" / "nested" / "last"
    result = runner.invoke(app, ["eval", "--k", "20", "--json"])
    assert result.exit_code == 0, result.output
    assert f"using the latest run: {latest}" in result.stderr
    recorded = json.loads((latest / "metrics.json").read_text())["test"]
    assert json.loads(result.stdout) == {k: v for k, v in recorded.items() if k.endswith("@20")}
    result = runner.invoke(app, ["recommend", "--user", "0", "--k", "3", "--internal-ids", "--json"])
    assert result.exit_code == 0 and f"using the latest run: {latest}" in result.stderr
    assert len(json.loads(result.stdout)["items"]) == 3


def _setting_value(text: str):
    """A value as results.md writes it: JSON (numbers, booleans) or a bare word such as text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def test_the_per_dataset_defaults_are_the_configurations_results_md_names():
    """docs/results.md lists, under "Defaults per dataset", each validation-selected configuration
    as `model on dataset: key=value, ...`; the registry must hold exactly those."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
    section = text.split("## Defaults per dataset")[1].split("\n## ")[0]
    named = {}
    for model, dataset, settings in re.findall(r"^- `(\w+) on (\w+): ([^`]+)`", section, flags=re.M):
        named[(model, dataset)] = {k: _setting_value(v) for k, v in (kv.split("=") for kv in settings.split(", "))}
    held = {(name, dataset): values for name, entry in MODELS.items() for dataset, values in entry.dataset_defaults.items()}
    assert named == held and named
    for (model, dataset), values in named.items():
        assert {k: build_config({"model": model, "dataset": dataset}).model_params[k] for k in values} == values
