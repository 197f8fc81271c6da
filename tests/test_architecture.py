"""Guards of the layout (README "Package layout"): no module uses another module's ``_private``
names, the import graph of ``cosmonb`` (including imports inside functions) is acyclic and
follows the documented layers, and the README's layout lists exactly the files in the tree."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "cosmonb"

#: Layers, lowest first: a module may import only from its own layer or a lower one.
#: (A package's __init__ sits in the layer of its package.)
LAYERS = [
    {"cosmonb._checks", "cosmonb.constants", "cosmonb.runtime"},
    {"cosmonb.cosmology", "cosmonb.stats", "cosmonb.data", "cosmonb.posteriors"},
    {"cosmonb.sims"},
    {"cosmonb.fisher"},
    {"cosmonb.models"},
    {"cosmonb.train", "cosmonb.checkpoints"},
    {"cosmonb.recipes", "cosmonb.inference"},
    {"cosmonb.plotting", "cosmonb.widgets", "cosmonb.notebooks_runner", "cosmonb.gallery", "cosmonb.cli", "cosmonb",
     "cosmonb.__main__"},
]


#: The one accepted back edge: the model registry (models/base.py) imports the shipped model
#: modules inside a function on first use (a plugin registry); they import base at module level.
REGISTRY_LOADER = ("cosmonb.models.base", "cosmonb.models.")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def resolve(importer: str, module: str | None, level: int) -> str:
    """Absolute name of ``from <.. module> import`` inside ``importer``."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


#: Calls that import a module named by a string: ``importlib.import_module(...)``,
#: ``import_module(...)`` (imported from importlib) and ``__import__(...)``.
DYNAMIC_IMPORTERS = {"import_module", "__import__"}


def dynamic_imports(name: str, tree: ast.AST):
    """(target module, lineno) for every string import (``importlib.import_module``, ``__import__``)
    of a cosmonb module in ``tree``, the source of module ``name``. A constant argument is resolved
    (relative names against ``package=__name__`` / ``__package__`` or a constant package); a computed
    one (``import_module(_MOVED[key])``, an f-string) may reach any module that the source names in a
    string constant, so every such constant counts as a target: a lazy upward shim cannot hide."""
    named = sorted({n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                    and re.fullmatch(r"cosmonb(\.\w+)*", n.value)})
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if called not in DYNAMIC_IMPORTERS or not node.args:
            continue
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            target = arg.value
            if target.startswith("."):
                package = next((k.value for k in node.keywords if k.arg == "package"), None)
                if len(node.args) > 1:
                    package = node.args[1]
                if isinstance(package, ast.Constant):
                    anchor = package.value
                elif isinstance(package, ast.Name) and package.id in ("__name__", "__package__"):
                    anchor = name if (is_package(name) or package.id == "__name__") else name.rsplit(".", 1)[0]
                else:
                    raise AssertionError(f"{name}:{node.lineno}: relative string import without a known package")
                level = len(target) - len(target.lstrip("."))
                base = anchor.split(".")
                base = base[: len(base) - (level - 1)]
                target = ".".join(base + ([target.lstrip(".")] if target.lstrip(".") else []))
            if target.split(".")[0] == "cosmonb":
                yield target, node.lineno
        else:
            for target in named:
                yield target, node.lineno


def imports(name: str, source: str | None = None):
    """(target module, imported names or None, lineno) for every cosmonb import in module ``name``,
    at any depth (functions included), string imports (:func:`dynamic_imports`) included.
    ``from pkg import sub`` counts as importing ``pkg.sub``. ``source`` replaces the file's text."""
    tree = ast.parse(MODULES[name].read_text() if source is None else source)
    for target, lineno in dynamic_imports(name, tree):
        yield target, None, lineno
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "cosmonb":
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = resolve(name, node.module, node.level)
            if target.split(".")[0] != "cosmonb":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:
                    yield sub, None, node.lineno
                else:
                    yield target, alias.name, node.lineno


def owning_module(target: str) -> str:
    """The module a dotted import target lives in (the longest prefix that is a module)."""
    parts = target.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in MODULES:
            return ".".join(parts[:k])
    raise AssertionError(f"{target} is not a cosmonb module")


def graph(sources: dict | None = None):
    """Module -> set of modules it imports, with a submodule's import also running its packages' __init__.
    ``sources`` (module name -> text) replaces some modules' files, for the guards' own tests."""
    edges = {}
    for name in MODULES:
        out = set()
        for target, _, _ in imports(name, (sources or {}).get(name)):
            mod = owning_module(target)
            out.add(mod)
            parts = mod.split(".")
            out.update(".".join(parts[:k]) for k in range(1, len(parts)) if ".".join(parts[:k]) in MODULES)
        # a package's own __init__ runs before its submodules: not an edge of the submodule
        own = {".".join(name.split(".")[:k]) for k in range(1, len(name.split(".")))}
        if name == REGISTRY_LOADER[0]:
            out = {m for m in out if not m.startswith(REGISTRY_LOADER[1])}
        edges[name] = out - {name} - own
    return edges


def layer(name: str) -> int:
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        prefix = ".".join(parts[:k])
        for i, members in enumerate(LAYERS):
            if prefix in members:
                return i
    raise AssertionError(f"{name}: not in any layer of tests/test_architecture.py LAYERS; add it")


def test_no_module_uses_another_modules_private_names():
    bad = []
    for name in MODULES:
        tree = ast.parse(MODULES[name].read_text())
        for target, imported, line in imports(name):
            if imported and imported.startswith("_") and not imported.startswith("__"):
                bad.append(f"{name}:{line} imports {imported} from {target}")
            if imported is None and target.rsplit(".", 1)[-1].startswith("_") and target != "cosmonb._checks":
                if not target.endswith("__main__"):
                    bad.append(f"{name}:{line} imports the private module {target}")
        # attribute access x._y on a name bound to a cosmonb module
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                base = resolve(name, node.module, node.level) if isinstance(node, ast.ImportFrom) else None
                for alias in node.names:
                    full = alias.name if base is None else f"{base}.{alias.name}"
                    if full in MODULES and full != name:
                        aliases[alias.asname or alias.name.split(".")[0]] = full
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                bad.append(f"{name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not bad, "private names used across modules (give them a public name in one home):\n" + "\n".join(bad)


def test_the_private_import_guard_catches_a_violation(tmp_path):
    """The guard's parser sees both forms of a private import."""
    tree = ast.parse("from ..sims.fields import _MapData\nfrom .. import stats\nstats._binning(4, 25.0)\n")
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
    attrs = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)]
    assert "_MapData" in names and "_binning" in attrs


def test_import_graph_is_acyclic():
    edges = graph()
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def upward_imports(sources: dict | None = None):
    return [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
            for a, targets in graph(sources).items() for b in targets if layer(b) > layer(a)]


def test_imports_follow_the_layers():
    bad = upward_imports()
    assert not bad, "imports against the data flow (README 'Package layout'):\n" + "\n".join(bad)


SHIMS = {
    "constant": 'import importlib\n\ndef fit():\n    return importlib.import_module("cosmonb.recipes.flows").fit_flow\n',
    "relative": 'from importlib import import_module\n\ndef fit():\n'
                '    return import_module("..recipes.flows", package=__package__).fit_flow\n',
    "computed": '_MOVED = {"fit_flow": "cosmonb.recipes.flows"}\n\ndef __getattr__(name):\n'
                '    import importlib\n\n    return getattr(importlib.import_module(_MOVED[name]), name)\n',
    "dunder": 'def fit():\n    return __import__("cosmonb.train", fromlist=["fit"]).fit\n',
}


@pytest.mark.parametrize("kind", sorted(SHIMS))
def test_the_layer_guard_sees_string_imports(kind):
    """A model module reaching recipes/train through importlib (the removed ``flows.fit_flow``
    shims) is an upward import too."""
    source = MODULES["cosmonb.models.flows"].read_text() + "\n\n" + SHIMS[kind]
    bad = upward_imports({"cosmonb.models.flows": source})
    assert any(b.startswith("cosmonb.models.flows ") for b in bad), bad


def test_readme_layout_matches_the_tree():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Package layout\n+```\n(.*?)```", text, re.S)
    assert block, "README.md: no '## Package layout' code block"
    listed, stack = set(), []
    for line in block.group(1).splitlines():
        m = re.match(r"( *)(\S+)", line)
        if not m:
            continue
        depth, entry = len(m.group(1)) // 2, m.group(2)
        stack[depth:] = [entry]
        path = "".join(stack)
        if path.startswith("cosmonb/") and path.endswith(".py"):
            listed.add(path)
    actual = {str(p.relative_to(ROOT)) for p in PKG.rglob("*.py")}
    assert listed == actual, (f"README layout lists files that do not exist: {sorted(listed - actual)}; "
                              f"files missing from it: {sorted(actual - listed)}")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_is_in_a_layer(name):
    layer(name)
