"""docs/architecture.md names modules, classes and functions in `code`: each must exist, so the
map a new engineer reads is the code they will find (it had run ahead of the code in places)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DATA_FILES = (".toml", ".npz", ".csv", ".json", ".safetensors", ".onnx", ".png")
CODE_FOLDERS = ("core/", "gui/", "sslstudio/", "tests/", "bench/", "packaging/")


def defined_names() -> set[str]:
    """Every class, function, method and module-level name in sslstudio/, bare, as Class.member
    and as module.name (the module's file name without .py)."""
    names: set[str] = set()
    for path in (REPO / "sslstudio").rglob("*.py"):
        module = path.parent.name if path.stem == "__init__" else path.stem  # a package: its folder
        names.add(module)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            found = []
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append(node.name)
            elif isinstance(node, ast.Assign):
                found += [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                found.append(node.target.id)
            for name in found:
                names.update({name, f"{module}.{name}"})
            if isinstance(node, ast.ClassDef):
                for member in node.body:
                    if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        names.update({f"{node.name}.{member.name}", member.name})
    return names


def code_references(text: str) -> list[str]:
    """The `code` spans that name code: paths of the repo and dotted or bare identifiers; not
    commands, flags, file names of a run folder, TOML tables or patterns."""
    references = []
    for span in re.findall(r"`([^`]+)`", text):
        span = span.strip().removesuffix("()")
        if not span or " " in span or span.startswith(("-", "[", "@", ".")) or "*" in span:
            continue
        if span.endswith(DATA_FILES):
            continue  # a file a run or project holds, not code
        if "/" in span:
            if span.startswith(CODE_FOLDERS):
                references.append(span)
        elif all(IDENTIFIER.fullmatch(part) for part in span.split(".")) and (
                "." in span or "_" in span or any(c.isupper() for c in span)):
            references.append(span)
    return references


def exists(reference: str, names: set[str]) -> bool:
    if reference.endswith(".py") and "/" not in reference:  # a module by its file name
        return reference.removesuffix(".py") in names
    if "/" in reference:
        head, _, attribute = reference.partition(".") if reference.count(".") > 1 or (
            "." in reference and not reference.endswith(".py")) else (reference, "", "")
        for root in (REPO / "sslstudio", REPO):
            path = root / head
            if path.exists() or path.with_suffix(".py").exists():
                return not attribute or attribute in names
        return False
    return reference in names


def test_every_name_the_architecture_doc_gives_exists():
    names = defined_names()
    references = code_references(DOC.read_text(encoding="utf-8"))
    assert len(references) > 40  # the doc still names its parts
    missing = sorted({r for r in references if not exists(r, names)})
    assert not missing, f"docs/architecture.md names what the code does not have: {missing}"
