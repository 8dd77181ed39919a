"""report.html in headless Chromium (Debian packages chromium + chromium-driver): it renders,
every figure decodes to an image with a width, and nothing is logged as an error.

No browser driver library: a copy of the report gets a small script that records console
errors and uncaught exceptions and, once the page has loaded, writes what it found into an
attribute of <body>; `chromium --dump-dom` prints the DOM after the scripts ran."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from encoderlab.reporting import build_report
from test_report import classification_run, pretrain_run, qa_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

PROBE_HEAD = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push('error: ' + e.message));
const __ce = console.error.bind(console);
console.error = (...a) => { window.__errors.push('console: ' + a.join(' ')); __ce(...a); };
</script>"""

PROBE_END = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  document.body.setAttribute('data-probe', JSON.stringify({
    images: imgs.length,
    widths: imgs.map(i => i.naturalWidth),
    complete: imgs.every(i => i.complete),
    tables: document.querySelectorAll('table').length,
    h1: (document.querySelector('h1') || {}).textContent || '',
    errors: window.__errors,
  }));
});
</script>"""


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="no /usr/bin/chromium: apt-get install chromium chromium-driver to run the browser check",
)
def test_report_html_renders_in_chromium(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    runs = [
        classification_run(root, "cls", right={0, 1, 2, 3, 4, 5, 6, 7}, valid_accs=[0.75, 0.8]),
        classification_run(root, "cnn", right={0, 1, 2, 3, 4, 5, 8}, valid_accs=[0.6, 0.7]),
        qa_run(root),
        pretrain_run(root),
    ]
    html = build_report(runs, tmp_path / "report", title="Browser check").read_text()
    probed = html.replace("<head>", "<head>" + PROBE_HEAD, 1).replace(
        "</body>", PROBE_END + "</body>", 1
    )
    assert probed != html
    page = tmp_path / "probe.html"
    page.write_text(probed, encoding="utf-8")

    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    m = re.search(r'data-probe="([^"]*)"', out.stdout)
    assert m, f"the page did not finish loading; stderr: {out.stderr[-2000:]}"
    probe = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["h1"] == "Browser check"
    assert probe["tables"] >= 5
    assert probe["images"] >= 4 and probe["complete"]
    assert all(w > 0 for w in probe["widths"]), probe["widths"]
    assert probe["errors"] == []
    console = [ln for ln in out.stderr.splitlines() if "CONSOLE" in ln and "probe.html" in ln]
    assert console == [], console
