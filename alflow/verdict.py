"""The verdict that opens the campaign report: how the campaign ended.

Converged or not, in which iteration and why; the final committee's test and
audit errors; the validation verdict; where the model is. Read from the
campaign's small files alone (``campaign.csv`` or, while a campaign runs, the
per-iteration JSON products; ``final/model_card.json``;
``validation/summary.json``): no torch, no Snakemake, cheap enough for the
Snakefile to call on every invocation. A missing file or column (older
campaigns lack the energy offsets) leaves its part out, and
:func:`front_page` never raises: a campaign must not stop over its summary.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

from . import config as alcfg
from .metrics import campaign_row

#: Characters with a meaning in reStructuredText inline markup.
_RST_SPECIAL = re.compile(r"([\\*`_|])")


def fmt(value) -> str:
    """A figure as the verdict prints it: three significant digits, whole
    numbers from 100 on (``123``, ``45.7``, ``3.26``); ``n/a`` for none."""
    value = _num(value)
    if value is None:
        return "n/a"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _signed(value) -> str:
    text = fmt(value)
    return text if text.startswith("-") or text == "n/a" else "+" + text


def _num(value) -> float | None:
    """A finite float, or None (missing, NaN, not a number)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _true(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "1.0")


def _text(value) -> str | None:
    """Free text from a file, escaped for reStructuredText (None if empty)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "":
        return None
    return _RST_SPECIAL.sub(r"\\\1", str(value))


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def campaign_rows(results: str | Path) -> list[dict]:
    """One dict per finished iteration, in order: ``campaign.csv`` when it
    covers every iteration whose ``metrics.json`` exists, else rows built the
    same way from the per-iteration JSON files (a running campaign writes
    ``campaign.csv`` only at its end). Missing values are None."""
    results = Path(results)
    try:
        table = pd.read_csv(results / "campaign.csv")
        rows = [{k: (None if _missing(v) else v) for k, v in r.items()}
                for r in table.sort_values("iteration").to_dict("records")]
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        rows = []
    done = sorted(int(d.name[5:]) for d in results.glob("iter_[0-9][0-9][0-9]")
                  if (d / "metrics.json").is_file())
    if done and (not rows or _num(rows[-1].get("iteration")) is None
                 or rows[-1]["iteration"] < done[-1]):
        rows = [_row_from_files(results, i) for i in done]
    return rows


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _row_from_files(results: Path, i: int) -> dict:
    """Iteration ``i``'s row as scripts/campaign.py makes it (without compute hours)."""
    d, nxt = results / f"iter_{i:03d}", results / f"iter_{i + 1:03d}"
    return campaign_row(i, _read_json(d / "dataset" / "summary.json") or {},
                        _read_json(d / "metrics.json") or {},
                        _read_json(d / "select" / "stats.json"), _read_json(d / "calibration.json"),
                        audit=(_read_json(nxt / "calibration.json") or {}).get("audit"))


def converged_at(rows: list[dict]) -> tuple[int, str | None] | None:
    """The iteration in which the campaign converged (the first row marked
    converged; later rows are no-ops) and its stop reason, or None."""
    for row in rows:
        if _true(row.get("converged")):
            return int(row["iteration"]), _text(row.get("stop_reason"))
    return None


def error_summary(errors: dict) -> str | None:
    """``force RMSE 123 meV/Å, energy RMSE 4.5 meV/atom (constant offset
    +3.2 meV/atom, offset-free RMSE 1.1 meV/atom)`` from a card's
    ``test_set`` or a campaign row (the same keys); None without figures."""
    parts = []
    if _num(errors.get("force_rmse_meV_per_A")) is not None:
        parts.append(f"force RMSE {fmt(errors['force_rmse_meV_per_A'])} meV/Å")
    if _num(errors.get("energy_rmse_meV_per_atom")) is not None:
        energy = f"energy RMSE {fmt(errors['energy_rmse_meV_per_atom'])} meV/atom"
        offset = _num(errors.get("energy_offset_meV_per_atom"))
        free = _num(errors.get("energy_offset_free_rmse_meV_per_atom"))
        extra = ([f"constant offset {_signed(offset)} meV/atom"] if offset is not None else []) + \
                ([f"offset-free RMSE {fmt(free)} meV/atom"] if free is not None else [])
        parts.append(energy + (f" ({', '.join(extra)})" if extra else ""))
    return ", ".join(parts) or None


def card_audit(audit: dict | None) -> str:
    """The audit estimate of a model card: force RMSE with its interval, and
    the energy RMSE with its interval when the card has one."""
    if not audit or _num(audit.get("rmse")) is None:
        return "Audit estimate: none (no audit frames)."
    level = _num(audit.get("level"))
    where = ", ".join(filter(None, [
        f"{100 * level:.3g} % interval" if level is not None else "interval",
        f"{audit['n_frames']} frames" if audit.get("n_frames") else None,
        _plural("iteration", audit.get("iterations"))]))
    line = (f"Audit estimate ({where}): force RMSE {fmt(audit['rmse'])} meV/Å "
            f"[{fmt(audit.get('lower'))}, {fmt(audit.get('upper'))}]")
    energy = audit.get("energy") if isinstance(audit.get("energy"), dict) else {}
    if _num(energy.get("rmse")) is not None:
        line += (f"; energy RMSE {fmt(energy['rmse'])} meV/atom "
                 f"[{fmt(energy.get('lower'))}, {fmt(energy.get('upper'))}]")
    return line + "."


def _plural(word: str, items) -> str | None:
    if not isinstance(items, list) or not items:
        return None
    return f"{word}{'s' if len(items) > 1 else ''} {', '.join(map(str, items))}"


def row_audit(rows: list[dict]) -> str | None:
    """The latest audit in the campaign table (of the committee of that
    row's iteration, measured in the next): RMSE and upper bound."""
    row = next((r for r in reversed(rows) if _num(r.get("audit_force_rmse")) is not None), None)
    if row is None:
        return None
    line = (f"Audit estimate for the committee of iteration {int(row['iteration'])}: force RMSE "
            f"{fmt(row['audit_force_rmse'])} meV/Å")
    if _num(row.get("audit_upper")) is not None:
        line += f", upper bound {fmt(row['audit_upper'])} meV/Å"
    if _num(row.get("audit_energy_rmse")) is not None:
        line += f"; energy RMSE {fmt(row['audit_energy_rmse'])} meV/atom"
        if _num(row.get("audit_energy_upper")) is not None:
            line += f", upper bound {fmt(row['audit_energy_upper'])} meV/atom"
    return line + "."


def validation_line(summary: dict | None) -> str | None:
    """``Validation: stable (survival 1.00) ...`` from validation/summary.json
    (or a card's ``validation``); None without one."""
    if not summary or "stable" not in summary:
        return None
    line = f"Validation: **{'stable' if summary['stable'] else 'not stable'}**"
    if _num(summary.get("survival")) is not None:
        line += f" (survival {summary['survival']:.2f})"
    runs = " of ".join(filter(None, [
        f"{summary['seeds']} runs" if summary.get("seeds") else None,
        f"{summary['steps']} steps" if summary.get("steps") else None]))
    names = ", ".join(filter(None, map(_text, summary.get("conditions") or {})))
    where = " ".join(filter(None, [runs and runs + " per condition", names and "at " + names]))
    return line + ", production MD with the final committee" + (f": {where}" if where else "") + "."


def verdict(results: str | Path, config: dict) -> list[str]:
    """The verdict as reStructuredText blocks (a headline paragraph, then
    bullet items): how the campaign in ``results`` ended, or how far it is.
    A model card left by a shorter run of the same directory is ignored
    until the campaign's own last iteration is done."""
    results, last = Path(results), int(config["iterations"])
    rows = campaign_rows(results)
    card = _read_json(results / "final" / "model_card.json")
    summary = _read_json(results / "validation" / "summary.json")
    done = bool(rows) and int(rows[-1]["iteration"]) >= last
    enabled = (config.get("validation") or {}).get("enabled", True)
    if done and (card or not enabled):
        return _finished(results, rows, card, summary, last)
    if not rows:
        return [f"**Nothing done yet**: neither the bootstrap (iteration 0) nor any of the {last} "
                "iterations has finished."]
    # validation runs after the last iteration: an earlier summary is a shorter run's
    return _unfinished(rows, summary if done else None, last)


def _finished(results: Path, rows: list[dict], card: dict | None, summary: dict | None,
              last: int) -> list[str]:
    """Converged or not, the final committee's errors (the card's, else the
    last row's), the validation verdict and where the model and card are."""
    conv = converged_at(rows) or _card_convergence(card)
    if conv:
        head = f"**Converged** in iteration {conv[0]} of {last}"
        reason = conv[1]
    else:
        head = f"**Not converged** after {last} iterations"
        reason = _text((card or {}).get("stop_reason")) or _text(rows[-1].get("stop_reason"))
    lines = [head + (f": {reason}." if reason else ".")]
    # the card's test figures, completed from the last row (the same
    # metrics.json) where an older card lacks the energy offsets
    test = {k: v for k, v in rows[-1].items() if v is not None} | {
        k: v for k, v in ((card or {}).get("test_set") or {}).items() if v is not None}
    errors = error_summary(test)
    if errors:
        n = test.get("n_structures")
        lines.append(f"- Final committee (iteration {last}) on the test set"
                     + (f" ({n} structures)" if n else "") + f": {errors}.")
    audit = card_audit(card.get("audit")) if card else row_audit(rows)
    lines += [f"- {audit}"] if audit else []
    check = validation_line(summary or (card or {}).get("validation"))
    lines += [f"- {check}"] if check else []
    if card:
        model = (card.get("model") or {}).get("file") or "model.model"
        lines.append(f"- Model: ``{results / 'final' / model}``, its card: "
                     f"``{results / 'final' / 'model_card.md'}``.")
    else:
        lines.append("- No final model: the validation is off (``validation.enabled: false``); "
                     f"the committees are in ``{results}/iter_{last:03d}/models/``.")
    return lines


def _card_convergence(card: dict | None) -> tuple[int, str | None] | None:
    """(iteration, reason) from a card's ``stop_reason`` ("iteration 2: ..."),
    for a table that does not say when the campaign converged."""
    match = re.match(r"iteration (\d+): (.*)", str((card or {}).get("stop_reason")), re.S)
    if not (card or {}).get("converged") or not match:
        return None
    return int(match.group(1)), _text(match.group(2))


def _unfinished(rows: list[dict], summary: dict | None, last: int) -> list[str]:
    """How far a running or stopped campaign is, and its latest figures."""
    latest = rows[-1]
    it = int(latest["iteration"])
    head = (f"**Not finished**: iteration {it} of {last} done"
            + (" (the bootstrap)" if it == 0 else ""))
    conv = converged_at(rows)
    if conv:
        head += (f"; converged in iteration {conv[0]}" + (f": {conv[1]}" if conv[1] else "")
                 + "; the remaining iterations are no-ops")
    elif _text(latest.get("stop_reason")):
        head += f"; not converged yet: {_text(latest['stop_reason'])}"
    lines = [head + "."]
    errors = error_summary(latest)
    if errors:
        lines.append(f"- Latest committee (iteration {it}) on the test set: {errors}.")
    audit = row_audit(rows)
    lines += [f"- {audit}"] if audit else []
    check = validation_line(summary)
    lines.append(f"- {check}" if check else
                 "- Validation and final model: not yet (after the last iteration).")
    return lines


def stop_rule(config: dict) -> str:
    """When the campaign stops, in words, from ``convergence`` (the audit's
    targets, walker survival, the production probe) and the select step's
    ``accurate_ratio``; otherwise it runs every iteration."""
    conv = config["convergence"]
    targets = [f"{goal:g} {unit} on the {name} RMSE" for name, goal, unit in (
        ("force", conv.get("target_force_rmse"), "meV/Å"),
        ("energy", conv.get("target_energy_rmse"), "meV/atom")) if goal is not None]
    accurate = (f"when {100 * conv['accurate_ratio']:.3g} % of an iteration's sampled frames "
                "are accurate (committee deviation below ``trust_lo``)")
    every = f"else after all {config['iterations']} iterations"
    if not targets:
        return ("no error target (``convergence.target_force_rmse``: null): the audit measures "
                f"the error but never stops the campaign; converged {accurate}; {every}.")
    probe = alcfg.probe_settings(config)
    probe = (f" and the committee survives a production probe ({probe['seeds']} runs of "
             f"{probe['steps']} steps per condition)" if probe else " (no production probe)")
    return (f"converged when the audit's {100 * conv.get('confidence', 0.95):.3g} % upper bound "
            f"is at or below {' and '.join(targets)}, at least "
            f"{100 * conv['min_walker_survival']:.3g} % of the walkers ran all their steps"
            f"{probe}; or {accurate}; {every}.")


def front_page(config: dict) -> dict:
    """What report/workflow.rst shows above the configuration: ``verdict``
    (lines of reStructuredText) and ``stop_rule``. The Snakefile calls this on
    every run, so a failure here is shown on the page instead of stopping
    the campaign."""
    try:
        lines = verdict(config["results"], config)
    except Exception as exc:  # noqa: BLE001 - never let the report's summary stop a campaign
        lines = [f"The verdict could not be read from ``{config.get('results')}``: "
                 f"{_text(repr(exc))}"]
    try:
        rule = stop_rule(config)
    except Exception as exc:  # noqa: BLE001
        rule = f"(could not be described: {_text(repr(exc))})"
    return {"verdict": lines, "stop_rule": rule}
