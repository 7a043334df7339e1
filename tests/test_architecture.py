"""The package's import graph: imports point one way, down the layers, and never in a circle.

    facades   estimator, contrib, sklearn, cli, datafiles, demo, __main__
    (the package's __init__ holds only __version__ and lazy attributes: any module may import it)
    runners   cuda, distributed.*;  serving: export, onnx_graph, onnx_export, serving (minirnn serve)
    core      errors, config, hooks, metrics, heads, optimizers, checkpoint, predictions, state,
              step, loop, summary
    model     sparse, inputs, feature_column, features, layers, model, network, datasets
    kernels   minirnn.kernels.*: numpy and numba only, never minirnn outside kernels

Every import statement counts, the ones inside functions (lazy imports) too. The source files are
read with ``ast`` from the checkout (kernels/ is installed as minirnn.kernels).
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LAYERS = {
    "kernels": 0,
    "model": 1,
    "core": 2,
    "runners": 3,
    "facades": 4,
    "root": -1,      # the package itself: __version__ and lazy attributes, importable from anywhere
}
MODULE_LAYER = {
    "minirnn.sparse": "model", "minirnn.inputs": "model", "minirnn.feature_column": "model",
    "minirnn.features": "model", "minirnn.layers": "model", "minirnn.model": "model",
    "minirnn.network": "model", "minirnn.datasets": "model",
    "minirnn.errors": "core", "minirnn.config": "core", "minirnn.hooks": "core", "minirnn.metrics": "core",
    "minirnn.heads": "core", "minirnn.optimizers": "core", "minirnn.checkpoint": "core",
    "minirnn.predictions": "core", "minirnn.state": "core", "minirnn.step": "core", "minirnn.loop": "core",
    "minirnn.summary": "core",
    "minirnn.cuda": "runners", "minirnn.distributed": "runners", "minirnn.export": "runners",
    "minirnn.onnx_export": "runners", "minirnn.onnx_graph": "runners", "minirnn.serving": "runners",
    "minirnn": "root", "minirnn.estimator": "facades", "minirnn.contrib": "facades",
    "minirnn.sklearn": "facades", "minirnn.cli": "facades", "minirnn.datafiles": "facades",
    "minirnn.demo": "facades", "minirnn.__main__": "facades",
}


def _modules():
    """{module name: (path, is_package)} for minirnn/ and kernels/ (as minirnn.kernels)."""
    out = {}
    for folder, package in (("minirnn", "minirnn"), ("kernels", "minirnn.kernels")):
        base = os.path.join(ROOT, folder)
        for directory, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if not d.startswith((".", "__pycache__")) and d != "data"]
            for name in files:
                if not name.endswith(".py"):
                    continue
                parts = os.path.relpath(os.path.join(directory, name), base)[:-3].split(os.sep)
                is_package = parts[-1] == "__init__"
                if is_package:
                    parts = parts[:-1]
                out[".".join([package] + parts)] = (os.path.join(directory, name), is_package)
    return out


MODULES = _modules()


def _layer(module):
    if module == "minirnn.kernels" or module.startswith("minirnn.kernels."):
        return "kernels"
    while module:
        if module in MODULE_LAYER:
            return MODULE_LAYER[module]
        module = module.rpartition(".")[0]
    return None


def _imports(module):
    """Every (imported module, line) of ``module``'s source, relative imports resolved."""
    path, is_package = MODULES[module]
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
            # from . import x, with x a module, imports x (the package is imported already)
            found += [(name, node.lineno) for name in submodules] or [(base, node.lineno)]
    return found


def _internal(name):
    """The minirnn module an import names (the longest known prefix), or None for outside ones."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _graph():
    graph = {}
    for module in MODULES:
        edges = {}
        for name, line in _imports(module):
            target = _internal(name)
            if target is not None and target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def test_every_module_has_a_layer():
    assert len(MODULES) > 30
    missing = sorted(m for m in MODULES if _layer(m) is None)
    assert not missing, f"modules with no layer in tests/test_architecture.py: {missing}"


def test_imports_point_down_the_layers():
    upward = []
    for module, edges in _graph().items():
        for target, line in edges.items():
            if LAYERS[_layer(target)] > LAYERS[_layer(module)]:
                upward.append(f"{MODULES[module][0]}:{line}: {module} ({_layer(module)}) imports "
                              f"{target} ({_layer(target)})")
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    state, path, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for target in graph[node]:
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) == "kernels"))
def test_kernel_modules_import_only_numpy_numba_and_kernels(module):
    allowed = ("numpy", "numba", "scipy", "minirnn.kernels")    # scipy: the BLAS Numba's np.dot calls
    stdlib_ok = {"os", "functools", "importlib", "threading", "math", "ctypes", "warnings", "sys", "time",
                 "contextlib", "collections", "struct", "itertools", "platform", "weakref", "json", "types"}
    for name, line in _imports(module):
        root = name.split(".")[0]
        assert name == "minirnn.kernels" or name.startswith(allowed) or root in stdlib_ok, \
            f"{MODULES[module][0]}:{line}: a kernel module imports {name}"
        if not module.endswith(("_cuda", "cuda_common")):
            assert not name.startswith("numba.cuda") and not (name == "numba" and _names_cuda(module, line)), \
                f"{MODULES[module][0]}:{line}: a CPU kernel module imports numba.cuda"


def _names_cuda(module, line):
    """Whether the ``from numba import ...`` statement at ``line`` imports cuda."""
    tree = ast.parse(open(MODULES[module][0], encoding="utf-8").read())
    return any(isinstance(n, ast.ImportFrom) and n.lineno == line and any(a.name == "cuda" for a in n.names)
               for n in ast.walk(tree))


def test_the_checker_sees_a_lazy_upward_import(tmp_path, monkeypatch):
    """The walk finds imports inside functions: a lazy upward import is reported."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from .estimator import RNNClassifier\n    return RNNClassifier\n")
    monkeypatch.setitem(MODULES, "minirnn.model_probe", (str(source), False))
    monkeypatch.setitem(MODULE_LAYER, "minirnn.model_probe", "model")
    edges = dict(_imports("minirnn.model_probe"))
    assert "minirnn.estimator" in edges and edges["minirnn.estimator"] == 2
    with pytest.raises(AssertionError, match="minirnn.model_probe .model. imports minirnn.estimator"):
        test_imports_point_down_the_layers()
