"""tests/browser.py against a real Snakemake report of a tiny workflow, in real
headless Chromium (installed with apt-get when missing)."""
from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from browser import ensure_browser, inspect_report
from workflow import SNAKEMAKE

SNAKEFILE = textwrap.dedent('''
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rule all:
        input: "plots/line.png", "plots/bars.svg", "tables/bars.csv"

    rule line:
        output: report("plots/line.png", category="A", subcategory="x", caption="line.rst")
        run:
            fig, ax = plt.subplots(figsize=(4, 3), dpi=50)
            ax.plot([0, 1, 2], [0, 1, 4])
            fig.savefig(output[0])

    rule bars:
        output:
            svg=report("plots/bars.svg", category="A", subcategory="y", caption="bars.rst"),
            csv=report("tables/bars.csv", category="B", caption="bars.rst"),
        run:
            fig, ax = plt.subplots(figsize=(3, 2))
            ax.bar(["a", "b"], [3, 1])
            fig.savefig(output.svg)
            open(output.csv, "w").write("name,value\\na,3\\nb,1\\n")
''')


@pytest.fixture(scope="module")
def browser():
    ensure_browser()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    wd = tmp_path_factory.mktemp("report_wf")
    (wd / "Snakefile").write_text(SNAKEFILE)
    (wd / "line.rst").write_text("A line plot.\n")
    (wd / "bars.rst").write_text("A bar chart.\n")
    for args in (["-c1"], ["--report", "report.html"]):
        res = subprocess.run([SNAKEMAKE, *args], cwd=wd, capture_output=True, text=True,
                             timeout=300, check=False)
        assert res.returncode == 0, f"snakemake {' '.join(args)}:\n{res.stderr[-4000:]}"
    return wd / "report.html"


def test_report_figures_render(browser, report, tmp_path):
    info = inspect_report(report, tmp_path / "shots")
    assert info["categories"] == {"A": ["x", "y"], "B": ["Other"]}
    figs = {f["name"]: f for f in info["figures"]}
    assert sorted(figs) == ["bars.svg", "line.png"], info["figures"]  # the csv is no figure
    assert (figs["line.png"]["category"], figs["line.png"]["subcategory"]) == ("A", "x")
    assert (figs["bars.svg"]["category"], figs["bars.svg"]["subcategory"]) == ("A", "y")
    assert (figs["line.png"]["width"], figs["line.png"]["height"]) == (200, 150)
    for fig in figs.values():
        assert fig["width"] > 0 and fig["height"] > 0, fig
        assert fig["shown"][0] > 0 and fig["shown"][1] > 0, fig
        assert fig["nonblank"] is True, fig
        assert fig["clicked"] is True, fig
    assert {"workflow", "results", "a", "b"} <= set(info["front_text"].lower().split())
    assert len(info["screenshots"]) == 3
    for shot in info["screenshots"]:
        assert Path(shot).stat().st_size > 1000, shot


def test_not_a_report(browser, tmp_path):
    page = tmp_path / "plain.html"
    page.write_text("<!doctype html><html><body><h1>Hello</h1><img src='x.png'></body></html>")
    with pytest.raises(ValueError, match="not a Snakemake HTML report"):
        inspect_report(page, tmp_path / "shots")


def test_missing_driver_is_named(monkeypatch, report, tmp_path):
    import browser as mod

    real = mod.shutil.which
    monkeypatch.setattr(mod.shutil, "which", lambda name: None if name == "chromedriver" else real(name))
    with pytest.raises(RuntimeError, match="chromedriver not found on PATH"):
        inspect_report(report, tmp_path)
