"""Open a Snakemake HTML report (`snakemake --report report.html`) in headless
Chromium and report, from the rendered DOM, which figures it shows.

    ensure_browser()                      # apt-get install chromium chromium-driver if missing
    info = inspect_report("report.html", "shots/")

The report is Snakemake's React app (snakemake/report/html_reporter): the
globals `results` ({path: {name, mime_type, data_uri, ...}}), `categories`
({category: {subcategory: [path]}}) and `app` (the root component) exist; the
navbar lists one menu item per category ("Results" when there is only one),
a category lists its subcategories (skipped when it has only one), and each
result row ends with an "eye" link that shows images as <img src="data:...">
in the content area.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

PACKAGES = ("chromium", "chromium-driver")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")  # what the report shows as <img>


def ensure_browser() -> None:
    """Install chromium + chromedriver with apt-get when either is missing."""
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    if not shutil.which("apt-get"):
        raise RuntimeError("chromium/chromedriver missing and no apt-get to install "
                           f"them: install {' '.join(PACKAGES)}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # another apt-get may hold the dpkg lock (e.g. a concurrent install): wait for it
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    for cmd in (["apt-get", *lock, "update", "-q"],
                ["apt-get", *lock, "install", "-y", "-q", "--no-install-recommends", *PACKAGES]):
        res = subprocess.run(sudo + cmd, env=env, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(sudo + cmd)} failed ({res.returncode}):\n"
                               f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        raise RuntimeError(f"apt-get installed {' '.join(PACKAGES)} but chromium/chromedriver "
                           "are still not on PATH")


def start_browser(width: int = 1400, height: int = 1000):
    """A headless Chromium driven by Debian's chromedriver (works as root)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path]
    if missing:
        raise RuntimeError(f"{' and '.join(missing)} not found on PATH: install the Debian "
                           "packages chromium and chromium-driver (tests call ensure_browser())")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                f"--window-size={width},{height}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


# Size of the <img> showing results[path], and whether its pixels are not all one
# colour (drawn on a canvas; null if the canvas refuses to be read). null until loaded.
_IMG_JS = """
const uri = results[arguments[0]].data_uri;
const img = [...document.querySelectorAll('#app img')].find(i => i.getAttribute('src') === uri);
if (!img || !img.complete) return null;
const r = img.getBoundingClientRect();
let nonblank = null;
try {
    const w = Math.min(img.naturalWidth, 2000), h = Math.min(img.naturalHeight, 2000);
    const c = document.createElement('canvas'); c.width = w; c.height = h;
    const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0, w, h);
    const d = ctx.getImageData(0, 0, w, h).data;
    nonblank = false;
    for (let k = 4; k < d.length; k++) if (d[k] !== d[k % 4]) { nonblank = true; break; }
} catch (err) {}
return {width: img.naturalWidth, height: img.naturalHeight,
        shown: [Math.round(r.width), Math.round(r.height)], nonblank: nonblank};
"""


def inspect_report(html_path, screenshot_dir, timeout: float = 30) -> dict:
    """Render a Snakemake report in headless Chromium and walk through its results.

    Returns {"categories": {category: [subcategory, ...]},
             "figures": [{"name", "path", "category", "subcategory", "mime_type", "width",
                          "height", "shown", "nonblank", "clicked", "screenshot"}],
             "screenshots": [png paths], "front_text": visible text of the front page}.
    width/height are the <img>'s naturalWidth/naturalHeight (0 if it failed to
    decode), shown its on-screen size, clicked False where the figure was shown
    via app.setView instead of its eye button. Raises ValueError if the page is
    not a Snakemake report, RuntimeError if chromium/chromedriver are missing.
    """
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    html_path = Path(html_path).resolve()
    if not html_path.is_file():
        raise FileNotFoundError(html_path)
    shots = Path(screenshot_dir)
    shots.mkdir(parents=True, exist_ok=True)
    out = {"categories": {}, "figures": [], "screenshots": [], "front_text": ""}

    driver = start_browser()
    try:
        wait = WebDriverWait(driver, timeout)
        driver.get(html_path.as_uri())
        is_report = driver.execute_script(
            "return typeof results === 'object' && typeof categories === 'object'")
        if not is_report:
            raise ValueError(f"{html_path} is not a Snakemake HTML report "
                             "(no `results`/`categories` globals)")
        try:  # the React app has rendered its navbar menu
            wait.until(lambda d: d.execute_script(
                "return typeof app === 'object' && !!document.querySelector('#app nav ul li a')"))
        except TimeoutException:
            logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
            raise RuntimeError(f"the report's React app did not render in {timeout} s; "
                               f"browser console: {logs}") from None
        results = driver.execute_script(  # without the (large) data URIs
            "return Object.fromEntries(Object.entries(results).map("
            "([p, r]) => [p, {name: r.name, mime_type: r.mime_type}]))")
        cats = driver.execute_script("return categories")
        out["categories"] = {c: sorted(s) for c, s in sorted(cats.items())}
        out["front_text"] = driver.find_element(By.TAG_NAME, "body").text
        out["screenshots"].append(_shot(driver, shots / "00_front.png"))

        def click_text(text):  # the navbar menu item whose label is `text`
            items = [a for a in driver.find_elements(By.CSS_SELECTOR, "#app nav li > a")
                     if a.text.strip() == text]
            if not items:
                raise AssertionError(f"no navbar item {text!r}; navbar shows: "
                                     f"{driver.find_element(By.CSS_SELECTOR, '#app nav').text!r}")
            items[0].click()

        def record(path, cat, sub, clicked):
            wait.until(lambda d: d.execute_script(_IMG_JS, path))
            info = driver.execute_script(_IMG_JS, path)
            n = len(out["figures"]) + 1
            stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(path).name)
            shot = _shot(driver, shots / f"{n:02d}_{stem}.png")
            out["screenshots"].append(shot)
            out["figures"].append({"name": results[path]["name"], "path": path, "category": cat,
                                   "subcategory": sub, "mime_type": results[path]["mime_type"],
                                   **info, "clicked": clicked, "screenshot": shot})

        for cat, subs in out["categories"].items():
            for sub in subs:
                # home breadcrumb -> category menu item -> subcategory item (real clicks);
                # the app skips the menu/subcategory level when there is only one
                driver.find_element(By.CSS_SELECTOR, "#app nav ol li a").click()
                click_text("Results" if len(cats) == 1 else cat)
                if len(subs) > 1:
                    click_text(sub)
                wait.until(lambda d: d.execute_script(
                    "return app.state.navbarMode === 'subcategory' && "
                    "app.state.category === arguments[0] && app.state.subcategory === arguments[1]",
                    cat, sub))
                rows = driver.find_elements(By.CSS_SELECTOR, "#app nav table tbody tr")
                for k in range(len(rows)):
                    # re-find each time: clicking re-renders the table
                    row = driver.find_elements(By.CSS_SELECTOR, "#app nav table tbody tr")[k]
                    eye = row.find_element(By.CSS_SELECTOR, "td:last-child a")
                    if eye.get_dom_attribute("href") != "#":
                        continue  # a download link (not an image/html/pdf): nothing to show
                    eye.click()
                    path = driver.execute_script("return app.state.resultPath")
                    if results[path]["mime_type"] in IMAGE_TYPES:
                        record(path, cat, sub, clicked=True)
                # Image results without a visible row (Snakemake shows only one of
                # two results that differ by a "toggle" label) cannot be reached by
                # clicking a row: show them through the app's own setView instead.
                seen = {f["path"] for f in out["figures"]}
                for path in cats[cat][sub]:
                    if path not in seen and results[path]["mime_type"] in IMAGE_TYPES:
                        driver.execute_script(
                            "app.setView({content: 'img', resultPath: arguments[0],"
                            " contentPath: results[arguments[0]].data_uri})", path)
                        record(path, cat, sub, clicked=False)
    finally:
        driver.quit()
    return out


def _shot(driver, path: Path) -> str:
    if not driver.save_screenshot(str(path)):
        raise RuntimeError(f"could not save screenshot {path}")
    return str(path)
