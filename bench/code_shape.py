"""The shape of the code, as issue 12 asks to compare it before and after a refactor.

    python bench/code_shape.py [ROOT]          # ROOT defaults to the repository's sslstudio/

Prints the ten longest functions, the `modality` branches (comparisons against a modality name),
the files that spell a run-folder file name, import cycles between sslstudio modules (counting
imports inside functions too, which can hide a cycle) and the function-level imports.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

RUN_FILE_NAMES = {
    "checkpoints", "last.safetensors", "previous.safetensors", "checkpoints/last.safetensors",
    "config.toml", "metrics.csv", "embedding.npz", "skipped.csv", "scan_report.json",
    "status.json", "predictions.csv", "estimate.json", "adapted.toml", "model.safetensors",
    "lora.safetensors", "labels.csv", "tokenizer.json", "features.npz", "adapted", "cache",
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def mentions_modality(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id == "modality":
            return True
        if isinstance(sub, ast.Attribute) and sub.attr == "modality":
            return True
        if isinstance(sub, ast.Constant) and sub.value == "modality":
            return True
    return False


def is_modality_branch(node: ast.Compare) -> bool:
    """`x.modality == "text"`, `preprocess.get("modality") != "image"` and the like."""
    names = {"image", "text"}
    sides = [node.left, *node.comparators]
    literal = any(isinstance(s, ast.Constant) and s.value in names for s in sides)
    return literal and any(mentions_modality(s) for s in sides)


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "sslstudio"
    files = sorted(root.rglob("*.py"))
    functions, branches, spellers, local_imports = [], [], defaultdict(set), []
    graph: dict[str, set[str]] = defaultdict(set)
    modules = {module_name(f, root) for f in files}
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        name = module_name(path, root)
        rel = path.relative_to(root.parent).as_posix()
        parents = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.lineno} {node.name}"))
            elif isinstance(node, ast.Compare) and is_modality_branch(node):
                branches.append(f"{rel}:{node.lineno}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value in RUN_FILE_NAMES or node.value.split("/")[-1] in RUN_FILE_NAMES - {"cache", "adapted", "checkpoints"}:
                    spellers[rel].add(node.value)
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets = []
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif node.module:
                    base = node.module if node.level == 0 else None
                    if base:
                        targets = [base] + [f"{base}.{a.name}" for a in node.names]
                targets = [t for t in targets if t in modules and t != name]
                graph[name].update(targets)
                scope = parents.get(node)
                while scope is not None and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module)):
                    scope = parents.get(scope)
                if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    local_imports.append(f"{rel}:{node.lineno} in {scope.name}")
    functions.sort(reverse=True)
    print("Longest functions (lines):")
    for length, where in functions[:10]:
        print(f"  {length:4d}  {where}")
    print(f"\nmodality branches: {len(branches)}")
    for where in branches:
        print(f"  {where}")
    print(f"\nfiles that spell a run-folder file name: {len(spellers)}")
    for rel, names in sorted(spellers.items()):
        print(f"  {rel}: {', '.join(sorted(names))}")
    cycles = strongly_connected(graph)
    print(f"\nimport cycles (modules importing one another, function-level imports included): {len(cycles)}")
    for cycle in cycles:
        print("  " + " <-> ".join(sorted(cycle)))
    print(f"\nfunction-level imports: {len(local_imports)}")


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm; components of more than one module are the cycles. A package's
    __init__ importing its own submodules is not counted (that is how registries fill)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w.startswith(v + "."):
                continue  # a package importing its own submodule
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    main()
