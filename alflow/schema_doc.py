"""The README's configuration table, generated from config/schema.yaml.

    python -m alflow.schema_doc            # print the table
    python -m alflow.schema_doc README.md  # rewrite it between the markers

The schema is the one source of keys, defaults, enums and descriptions; a
test checks that the README's table is the one this module writes.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .config import load_schema

BEGIN = "<!-- config table: generated from config/schema.yaml by `python -m alflow.schema_doc README.md` -->"
END = "<!-- end of config table -->"
RERUNS = {None: "science", "execution": "never", "structure": "structure"}


def _value(value) -> str:
    return "`" + json.dumps(value, ensure_ascii=False).replace('"', "") + "`"


def _default(node: dict, required: bool) -> str:
    if "default" in node:
        return _value(node["default"])
    return "(required)" if required else "(none)"


def _meaning(node: dict) -> str:
    text = " ".join(str(node.get("description", "")).split())
    enum = node.get("enum") or next((o["enum"] for o in node.get("oneOf", []) if "enum" in o), None)
    if enum and not all(f"`{e}`" in text for e in enum):
        text += f" (one of {', '.join(f'`{e}`' for e in enum)})"
    return text.replace("|", "\\|")


def rows(schema: dict | None = None) -> list[tuple[str, str, str, str]]:
    """(key, default, reruns, meaning) of every documented key, in schema order.

    An object with properties of its own is walked into, unless the schema
    marks it as a whole (``x-rerun``: resources, envmodules); free-form
    objects (``committee.mace``) are one row.
    """
    schema = schema or load_schema()
    out = []

    def walk(node: dict, prefix: str, required: set[str], inherited: str | None) -> None:
        for key, child in node.get("properties", {}).items():
            name = prefix + key
            reruns = child.get("x-rerun", inherited)
            if child.get("properties") and "x-rerun" not in child:
                walk(child, name + ".", set(child.get("required", [])), reruns)
                continue
            out.append((f"`{name}`", _default(child, key in required), RERUNS[reruns],
                        _meaning(child)))

    walk(schema, "", set(schema.get("required", [])), None)
    return out


def table(schema: dict | None = None) -> str:
    lines = ["| key | default | reruns finished work | meaning |", "|---|---|---|---|"]
    lines += [f"| {k} | {d} | {r} | {m} |" for k, d, r, m in rows(schema)]
    return "\n".join(lines)


def replace_table(text: str, new_table: str) -> str:
    """``text`` with the part between the markers replaced by ``new_table``."""
    if BEGIN not in text or END not in text:
        raise ValueError("the README has no config table markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{new_table}\n{END}{tail}"


def readme_table(text: str) -> str:
    """The table between the markers of a README."""
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
        path.write_text(replace_table(path.read_text(), table()))
    else:
        print(table())
