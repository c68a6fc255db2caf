"""Read a model's hyperparameters from its constructor: the one place they are declared.

A hyperparameter is a keyword-only argument of the model class's ``__init__`` with a literal
default, an annotation (``int``, ``float``, ``bool``, ``str`` or ``Literal[...]``) and one line in
the class docstring's ``Args:`` section. A constructor that ends in ``**kwargs`` inherits the
hyperparameters of its base class that it does not declare again (SynerGraph re-declares only the
MGCN defaults it changes).

The source is read with :mod:`ast`, not imported, so ``synergraph models`` and ``--help`` list
every hyperparameter without loading torch.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from dgl_synergraph.errors import ConfigError

SIMPLE_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


@dataclass(frozen=True)
class Hyperparameter:
    name: str
    annotation: str  # as written, e.g. "int" or "Literal['all', 'last']"
    default: Any
    doc: str
    choices: tuple | None = None  # the values of a Literal annotation

    def coerce(self, value: Any, owner: str) -> Any:
        """``value`` checked against the annotation (ints are accepted for floats)."""
        if self.choices is not None:
            if value not in self.choices or isinstance(value, bool) != isinstance(self.choices[0], bool):
                raise ConfigError(f"{owner}.{self.name}: expected one of {', '.join(map(str, self.choices))}, "
                                  f"got {value!r}")
            return value
        expected = SIMPLE_TYPES[self.annotation]
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{owner}.{self.name}: expected {self.annotation}, got {value!r}")
        return value


def _module_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"cannot find module {module}")
    return Path(spec.origin)


@lru_cache(maxsize=None)
def _parse(module: str) -> ast.Module:
    return ast.parse(_module_file(module).read_text())


def _class_node(module: str, name: str) -> ast.ClassDef:
    for node in _parse(module).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise ImportError(f"{module} defines no class {name}")


def _base_of(module: str, node: ast.ClassDef) -> tuple[str, str] | None:
    """(module, class) of the first base class, when it was imported by name or defined here."""
    if not node.bases or not isinstance(node.bases[0], ast.Name):
        return None
    base = node.bases[0].id
    for stmt in _parse(module).body:
        if isinstance(stmt, ast.ImportFrom) and any((a.asname or a.name) == base for a in stmt.names):
            return stmt.module, base
        if isinstance(stmt, ast.ClassDef) and stmt.name == base:
            return module, base
    return None


def docstring_args(doc: str | None) -> dict[str, str]:
    """``name: text`` entries of a Google-style ``Args:`` section (continuation lines joined)."""
    out: dict[str, str] = {}
    lines = (doc or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    except StopIteration:
        return out
    indent, current = None, None
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        if indent is None:
            indent = width
        if width < indent:
            break
        if width == indent:
            name, _, text = line.strip().partition(":")
            current = name.split(" ")[0]
            out[current] = text.strip()
        elif current is not None:
            out[current] += " " + line.strip()
    return out


def _choices(annotation: ast.expr) -> tuple | None:
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name) \
            and annotation.value.id == "Literal":
        elements = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
        return tuple(ast.literal_eval(e) for e in elements)
    return None


@lru_cache(maxsize=None)
def read_hyperparameters(module: str, class_name: str) -> dict[str, Hyperparameter]:
    """Name -> :class:`Hyperparameter` for the class ``module:class_name``, in declaration order."""
    node = _class_node(module, class_name)
    docs = docstring_args(ast.get_docstring(node))
    init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is None:
        raise ImportError(f"{module}.{class_name} has no __init__ of its own")
    args = init.args
    found: dict[str, Hyperparameter] = {}
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        where = f"{module}.{class_name}.{arg.arg}"
        if default is None or arg.annotation is None:
            raise TypeError(f"{where}: a hyperparameter needs an annotation and a default")
        annotation = ast.unparse(arg.annotation)
        choices = _choices(arg.annotation)
        if choices is None and annotation not in SIMPLE_TYPES:
            raise TypeError(f"{where}: annotation {annotation!r} is not int, float, bool, str or Literal[...]")
        found[arg.arg] = Hyperparameter(arg.arg, annotation, ast.literal_eval(default), docs.get(arg.arg, ""),
                                        choices)
    if args.kwarg is not None:
        base = _base_of(module, node)
        if base is None:
            raise TypeError(f"{module}.{class_name}: **{args.kwarg.arg} needs a base class to inherit from")
        for name, inherited in read_hyperparameters(*base).items():
            if name in found:
                found[name] = Hyperparameter(name, found[name].annotation, found[name].default,
                                             found[name].doc or inherited.doc, found[name].choices)
            else:
                found[name] = inherited
    return found


def class_summary(module: str, class_name: str) -> str:
    """The first line of the class docstring."""
    doc = ast.get_docstring(_class_node(module, class_name)) or ""
    return doc.strip().splitlines()[0] if doc.strip() else class_name
