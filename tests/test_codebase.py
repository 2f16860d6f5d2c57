"""The codebase stays easy to pick up: small modules with one job each, no
module reaching into another's private names, a lint-clean workflow."""
import ast
import subprocess

import pytest

from conftest import REPO
from workflow import SNAKEMAKE

SOURCES = [p for d in ("alflow", "scripts", "benchmarks", "tests")
           for p in sorted((REPO / d).rglob("*.py")) if "out" not in p.relative_to(REPO).parts]


@pytest.mark.parametrize("module", sorted((REPO / "alflow").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_modules_stay_under_500_lines(module):
    assert len(module.read_text().splitlines()) <= 500


def private_imports(path):
    """Underscore names imported from another module, or read off an imported
    module (`mod._name`)."""
    tree = ast.parse(path.read_text())
    modules = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
               for a in n.names} | {a.asname or a.name for n in ast.walk(tree)
                                    if isinstance(n, ast.ImportFrom) for a in n.names}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            found += [f"from {node.module} import {a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id in modules and node.attr.startswith("_")
              and not node.attr.startswith("__") and node.value.id not in ("self", "cls")):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_private_use_is_detected(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from alflow.sampling import _x\nimport alflow.cp2k as c\nc._y()\n")
    assert private_imports(bad) == ["from alflow.sampling import _x", "c._y"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_uses_another_modules_private_names(path):
    ours = [f for f in private_imports(path) if "pytest" not in f and "_pytest" not in f]
    assert not ours, f"{path.relative_to(REPO)}: {ours}"


def test_workflow_is_lint_clean():
    proc = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile",
                           str(REPO / "config" / "demo.yaml"), "--lint"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr, \
        proc.stdout[-3000:] + proc.stderr[-3000:]
