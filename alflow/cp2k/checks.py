"""Pre-flight checks of a CP2K template: can it label structures with these
elements (a ``&KIND`` with basis set and potential per element, data files
that exist and list them)?"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ase.data import atomic_numbers

from .template import Cp2kTemplate

#: Quickstep methods that need a basis set and a pseudopotential per element
#: (the semi-empirical ones, xTB, DFTB, PM6, ..., need neither).
BASIS_METHODS = {"gpw", "gapw", "gapw_xc", "lrigpw", "rigpw", "ofgpw"}


def data_directory() -> Path | None:
    """CP2K's data directory: ``$CP2K_DATA_DIR``, else Debian's /usr/share/cp2k;
    None when neither exists (e.g. on a login node without the CP2K module)."""
    for candidate in (os.environ.get("CP2K_DATA_DIR"), "/usr/share/cp2k"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def needs_basis(template: Cp2kTemplate) -> bool:
    """Whether the template's method needs BASIS_SET and POTENTIAL per element."""
    force_eval = template.tree["+force_eval"][0]
    if str(force_eval.get("method", "quickstep")).lower() not in ("qs", "quickstep"):
        return False
    method = str(force_eval.get("+dft", {}).get("+qs", {}).get("method", "gpw")).lower()
    return method in BASIS_METHODS


def check_elements(template: Cp2kTemplate, elements: Sequence[str],
                   data_dir: Path | None = None) -> list[str]:
    """What the template lacks to label structures with these elements, one
    line per problem (empty: nothing). For methods with basis sets
    (:data:`BASIS_METHODS`): every element needs a ``&KIND`` named after it
    with ``BASIS_SET`` and ``POTENTIAL`` (the workflow's coordinates use the
    chemical symbols as kind names), the data files named in ``&DFT`` must
    exist (next to the template, absolute, or in ``data_dir``, default
    :func:`data_directory`; not checked when it is unknown) and must list
    that basis set and potential for that element."""
    if not needs_basis(template):
        return []
    force_eval = template.tree["+force_eval"][0]
    dft = force_eval.get("+dft", {})
    kinds = {str(k.get("_", "")).lower(): k for k in force_eval.get("+subsys", {}).get("+kind", [])}
    data_dir = data_dir or data_directory()
    problems: list[str] = []
    known, files = {}, {}  # per "basis set"/"potential": (element, name) pairs, file names
    for key, what, default in (("basis_set_file_name", "basis set", "BASIS_SET"),
                               ("potential_file_name", "potential", "POTENTIAL")):
        names = dft.get(key) or [default]
        files[what] = names = names if isinstance(names, list) else [names]
        found = [_data_file(n, data_dir) for n in names]
        problems += [f"{key.upper()} {n}: no such file next to the template or in "
                     f"CP2K's data directory {data_dir}" for n, f in zip(names, found)
                     if f is None and data_dir is not None]
        # names can be looked up only when every file was found
        known[what] = _named_entries(found) if all(found) else None
    method = str(dft.get("+qs", {}).get("method", "gpw")).upper()
    for element in elements:
        kind = kinds.get(element.lower())
        if kind is None:
            problems.append(f"element {element}: no &KIND {element} section with BASIS_SET and "
                            f"POTENTIAL (method {method} needs both for every element)")
            continue
        basis = kind.get("basis_set") or []
        basis = [str(b).split()[-1] for b in (basis if isinstance(basis, list) else [basis])]
        for what, keyword, names in (("basis set", "BASIS_SET", basis),
                                     ("potential", "POTENTIAL", [kind.get("potential")])):
            names = [n for n in names if n]
            if not names:
                problems.append(f"element {element}: &KIND {element} has no {keyword}")
            elif known[what] is not None:
                problems += [f"element {element}: {what} {name} is not in "
                             f"{', '.join(files[what])}" for name in names
                             if (element.lower(), name.lower()) not in known[what]]
    return problems


def _data_file(name: str, data_dir: Path | None) -> Path | None:
    path = Path(name)
    if path.is_absolute():
        return path if path.is_file() else None
    if data_dir is not None and (data_dir / name).is_file():
        return data_dir / name
    return None


def _named_entries(files: Sequence[Path]) -> set[tuple[str, str]]:
    """(element, name) pairs of CP2K basis/potential files: lines that start with
    an element symbol followed by the names of the entry."""
    entries: set[tuple[str, str]] = set()
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 2 and words[0].capitalize() in atomic_numbers:
                entries.update((words[0].lower(), w.lower()) for w in words[1:])
    return entries
