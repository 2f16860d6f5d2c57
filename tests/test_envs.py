"""The conda environments list the same packages and versions as requirements.txt."""
import re

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
    assert len(env_pins) == len(pip), f"{env.name}: every pip entry must be pinned with =="
    for name, version in env_pins.items():
        assert REQUIREMENTS.get(name) == version, f"{env.name}: {name}=={version} vs requirements.txt"


def test_every_rule_has_an_env_log_and_benchmark():
    for smk in (REPO / "rules").glob("*.smk"):
        text = smk.read_text()
        for rule in re.findall(r"^rule (\w+):", text, re.MULTILINE):
            body = text.split(f"rule {rule}:")[1].split("\nrule ")[0]
            for directive in ("log:", "benchmark:", "conda:"):
                assert directive in body, f"rule {rule} in {smk.name} lacks {directive}"
