"""The shape of the package: imports point one way (no cycle among fastbp's modules, imports
inside functions included), and no module but model.py reaches into MLP's private attributes."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fastbp"


def _modules():
    """{dotted name: parsed source} of every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = (path, ast.parse(path.read_text()))
    return out


def _imports(name, path, tree, modules):
    """The package modules ``name`` imports, wherever in its source the import is."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != name}


def test_no_import_cycle_among_the_packages_modules():
    modules = _modules()
    graph = {name: _imports(name, path, tree, modules) for name, (path, tree) in modules.items()}
    # a module's package __init__ runs before it, so importing the package itself is not a cycle edge
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert not cycles, cycles
    assert "fastbp.model" in graph["fastbp.training"] or "fastbp.training" in graph["fastbp.model"]


def test_only_model_py_touches_the_private_attributes_of_mlp():
    modules = _modules()
    _, model_tree = modules["fastbp.model"]
    private = set()
    for node in ast.walk(model_tree):
        if isinstance(node, ast.ClassDef) and node.name == "MLP":
            for n in ast.walk(node):
                if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self":
                    name = n.attr
                elif isinstance(n, ast.FunctionDef):
                    name = n.name
                else:
                    continue
                if name.startswith("_") and not name.startswith("__"):
                    private.add(name)
    assert private, "MLP has private attributes to protect"
    reached = []
    for name, (path, tree) in modules.items():
        if name == "fastbp.model":
            continue
        # a module's own classes may use the same private names for themselves
        own = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        own |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
                and isinstance(n.value, ast.Name) and n.value.id == "self"}
        reached += [f"{path.name}:{n.lineno} .{n.attr}" for n in ast.walk(tree)
                    if isinstance(n, ast.Attribute) and n.attr in private - own]
    assert not reached, reached
