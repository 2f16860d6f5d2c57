"""The conda environments list the same packages and versions as requirements.txt."""
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO


def pins(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


REQUIREMENTS = pins((REPO / "requirements.txt").read_text().splitlines())


@pytest.mark.parametrize("env", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_matches_requirements(env):
    deps = yaml.safe_load(env.read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    env_pins = pins(pip)
    assert env_pins, f"{env.name} pins nothing"
    packages = [p for p in pip if p != "-e .."]  # alflow itself
    assert len(env_pins) == len(packages), f"{env.name}: every pip entry must be pinned with =="
    for name, version in env_pins.items():
        assert REQUIREMENTS.get(name) == version, f"{env.name}: {name}=={version} vs requirements.txt"


def test_every_rule_has_an_env_log_and_benchmark():
    for smk in (REPO / "rules").glob("*.smk"):
        text = smk.read_text()
        for rule in re.findall(r"^rule (\w+):", text, re.MULTILINE):
            body = text.split(f"rule {rule}:")[1].split("\nrule ")[0]
            for directive in ("log:", "benchmark:", "conda:"):
                assert directive in body, f"rule {rule} in {smk.name} lacks {directive}"


# --- each conda env provides what the scripts of its rules import ----------
# Imports are derived from the code, not listed by hand: a script's own
# imports, and of each alflow module it uses the module-level imports plus
# those inside the functions and classes it uses (lazy imports of functions it
# never calls do not count). A package is provided by an env when the env pins
# it or it is a dependency of something pinned there (read from this venv's
# installed metadata).
import ast  # noqa: E402
import importlib.metadata as metadata  # noqa: E402
import sys  # noqa: E402

from packaging.requirements import Requirement  # noqa: E402


def _module_file(name):
    p = REPO / Path(*name.split("."))
    return next((c for c in (p.with_suffix(".py"), p / "__init__.py") if c.exists()), None)


def _imports(nodes, package):
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None, a.asname or a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for a in node.names:
                yield base, a.name, a.asname or a.name


def _run_on_import(tree):
    """Statements run when a module is imported (not those inside functions)."""
    out, stack = [], list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.ClassDef):
            stack.extend(n for n in node.body
                         if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def third_party_imports(path, used=None, seen=None):
    """Top-level names of the non-stdlib packages that running ``path`` (a
    script, used=None) or using the names ``used`` of module ``path`` imports."""
    seen = set() if seen is None else seen
    key = (path, None if used is None else frozenset(used))
    if key in seen:
        return set()
    seen.add(key)
    tree = ast.parse(path.read_text())
    rel = path.relative_to(REPO).with_suffix("").parts
    package = ".".join(rel[:-1] if path.name == "__init__.py" else rel[:-1])
    if used is None:
        nodes = list(ast.walk(tree))
    else:
        nodes = _run_on_import(tree)
        for d in ast.walk(tree):
            if isinstance(d, (ast.FunctionDef, ast.ClassDef)) and d.name in used:
                nodes += list(ast.walk(d))
    out = set()
    for module, name, alias in _imports(nodes, package):
        top = module.split(".")[0]
        if top == "alflow":
            sub = _module_file(f"{module}.{name}") if name else None
            if sub:  # `from alflow import logs`: the attributes used of it
                attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                         and isinstance(n.value, ast.Name) and n.value.id == alias}
                out |= third_party_imports(sub, attrs, seen)
            elif _module_file(module):
                out |= third_party_imports(_module_file(module), {name} if name else set(), seen)
        elif module and top not in sys.stdlib_module_names and top != "__future__":
            out.add(top)
    return out


def _dists_with_dependencies(names):
    todo, found = [n.lower() for n in names], set()
    while todo:
        name = todo.pop().replace("_", "-")
        if name in found:
            continue
        found.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for spec in requires:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name.lower())
    return found


def env_provides(env):
    deps = yaml.safe_load(env.read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    dists = _dists_with_dependencies(pins(pip))
    return {top for top, owners in metadata.packages_distributions().items()
            if any(o.lower().replace("_", "-") in dists for o in owners)}


def rule_envs():
    """(rule, env file, script) for every rule of rules/*.smk."""
    out = []
    for smk in sorted((REPO / "rules").glob("*.smk")):
        blocks = re.split(r"^\s*rule (\w+):", smk.read_text(), flags=re.MULTILINE)
        for rule, body in zip(blocks[1::2], blocks[2::2]):
            env = re.search(r'conda:\s*"\.\./(envs/[\w.]+)"', body)
            script = re.search(r'script:\s*"\.\./(scripts/[\w.]+)"', body)
            if env and script:
                out.append((rule, REPO / env.group(1), REPO / script.group(1)))
    return out


def test_third_party_imports_are_derived_from_the_code():
    label = third_party_imports(REPO / "scripts" / "label.py")
    assert {"ase", "cp2k_input_tools"} <= label and "torch" not in label
    assert "mace" in third_party_imports(REPO / "scripts" / "evaluate.py")


@pytest.mark.parametrize("rule,env,script", rule_envs(), ids=lambda v: getattr(v, "name", v))
def test_env_provides_the_imports_of_its_scripts(rule, env, script):
    missing = third_party_imports(script) - env_provides(env) - {"snakemake"}
    assert not missing, (f"rule {rule} runs {script.name} in {env.name}, which lacks the "
                         f"packages of {sorted(missing)}")


def test_envs_install_the_alflow_package():
    for env in sorted((REPO / "envs").glob("*.yaml")):
        deps = yaml.safe_load(env.read_text())["dependencies"]
        pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
        assert "-e .." in pip, f"{env.name} must install alflow (pip: -e ..)"
