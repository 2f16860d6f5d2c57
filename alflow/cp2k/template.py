"""CP2K input templates: reading, validating against CP2K's input schema, and
the schema-backed parser/generator of cp2k-input-tools.

The user writes an ordinary CP2K input *template* (method, basis sets, SCF
settings, ...) without a structure; :func:`load_template` parses it into the
canonical tree of cp2k-input-tools instead of treating it as text.
"""

from __future__ import annotations

import functools
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cp2k_input_tools import DEFAULT_CP2K_INPUT_XML
from cp2k_input_tools.generator import CP2KInputGenerator
from cp2k_input_tools.parser import CP2KInputParser
from cp2k_input_tools.parser_errors import ParserError
from cp2k_input_tools.tokenizer import Context


@dataclass(frozen=True)
class Cp2kTemplate:
    """A parsed CP2K input template.

    ``tree`` is the canonical nested dictionary of
    :class:`cp2k_input_tools.parser.CP2KInputParser` (sections as ``"+name"``
    keys, repeatable sections as lists, lower-case keyword names), with
    ``@INCLUDE``/``@SET`` already resolved.  Never modify it in place.
    """

    path: Path
    tree: dict[str, Any] = field(repr=False)
    xmlspec: str | None = None  # the CP2K input schema, None: cp2k-input-tools' bundled one

    @property
    def fingerprint(self) -> str:
        """A canonical text of all settings, for hashing (e.g. resumability)."""
        return json.dumps(self.tree, sort_keys=True, default=str)


@functools.lru_cache(maxsize=4)
def input_schema(xmlspec: str | os.PathLike[str] | None = None) -> ET.ElementTree:
    """CP2K's input schema (``cp2k --xml``), parsed once per process (~1.5 s);
    None: the schema bundled with cp2k-input-tools."""
    return ET.parse(xmlspec or DEFAULT_CP2K_INPUT_XML)


class _SchemaParser(CP2KInputParser):
    """:class:`CP2KInputParser` on an already parsed schema (same attributes)."""

    def __init__(self, spec: ET.ElementTree, base_dir: Sequence[Path]) -> None:  # noqa: D107
        self._spec = spec
        self._tree = None
        self._treerefs = []
        self._key_trafo = str.lower
        self._base_inc_dir = base_dir


class SchemaGenerator(CP2KInputGenerator):
    """:class:`CP2KInputGenerator` on an already parsed schema
    (:func:`input_schema`), so that writing an input does not parse it again."""

    def __init__(self, spec: ET.ElementTree, indent_shift: int = 3) -> None:  # noqa: D107
        self._parse_tree = spec
        self._shift = indent_shift


# Keywords in FORCE_EVAL/DFT naming data files; relative names that exist next
# to the template are made absolute because CP2K runs in another directory.
_DFT_FILE_KEYWORDS = ("basis_set_file_name", "potential_file_name")


def load_template(path: str | os.PathLike[str], xmlspec: str | os.PathLike[str] | None = None) -> Cp2kTemplate:
    """Parse and validate a CP2K input template.

    ``xmlspec`` is an optional ``cp2k --xml`` schema file; by default the
    schema bundled with cp2k-input-tools is used.  Raises :class:`ValueError`
    naming the file and the problem if the file cannot be read or parsed, or
    if it does not contain exactly one ``FORCE_EVAL`` section.
    """
    path = Path(path)
    parser = _SchemaParser(input_schema(xmlspec), base_dir=[path.parent, Path.cwd()])
    try:
        with path.open() as handle:
            tree = parser.parse(handle)
    except OSError as exc:
        raise ValueError(f"CP2K template {path}: cannot be read ({exc.strerror or exc})") from exc
    except Exception as exc:  # any cp2k-input-tools / pint error is a parse error
        where = _current_section(parser)
        raise ValueError(f"CP2K template {path}: {_describe_parse_error(exc)}{where}") from exc
    force_evals = tree.get("+force_eval", [])
    if len(force_evals) != 1:
        what = "no FORCE_EVAL section" if not force_evals else f"{len(force_evals)} FORCE_EVAL sections"
        raise ValueError(f"CP2K template {path}: has {what}; exactly one is required")
    _absolutize_data_files(force_evals[0], path.parent)
    return Cp2kTemplate(path=path, tree=tree, xmlspec=None if xmlspec is None else str(xmlspec))


def _describe_parse_error(exc: BaseException) -> str:
    """One line describing a cp2k-input-tools exception (message and location)."""
    message = str(exc.args[0]) if exc.args else type(exc).__name__
    if not isinstance(exc, ParserError):
        message = f"{type(exc).__name__}: {message}"
    cause = exc.__cause__
    if cause is not None and cause.args:
        message += f" ({cause.args[0]})"
    ctx = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], Context) else None
    if ctx is not None and getattr(ctx, "linenr", None) is not None:
        message += f" at line {ctx.linenr}"
    if ctx is not None and ctx.line:
        message += f": {ctx.line.strip()!r}"
    return message


def _current_section(parser: CP2KInputParser) -> str:
    """' (in section A/B)' for the section the parser was in, if known."""
    refs = getattr(parser, "_treerefs", None) or []
    names = [ref.name for ref in refs[1:]]
    return f" (in section {'/'.join(names)})" if names else ""


def _absolutize_data_files(force_eval: dict[str, Any], base_dir: Path) -> None:
    dft = force_eval.get("+dft")
    if not dft:
        return
    for key in _DFT_FILE_KEYWORDS:
        if key not in dft:
            continue
        values = dft[key] if isinstance(dft[key], list) else [dft[key]]
        resolved = [_resolve_data_file(v, base_dir) for v in values]
        dft[key] = resolved if isinstance(dft[key], list) else resolved[0]


def _resolve_data_file(name: str, base_dir: Path) -> str:
    candidate = base_dir / name
    if not Path(name).is_absolute() and candidate.is_file():
        return str(candidate.resolve())
    return name  # CP2K will look it up in its data directory
