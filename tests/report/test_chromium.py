"""The report in a real browser (headless Chromium): it renders offline, with no console error, and every
embedded figure decodes (naturalWidth > 0). Skipped where /usr/bin/chromium is missing (CI installs it).

The screenshot is kept as a test artifact: tests/report/artifacts/report.png (gitignored)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_root import make_root  # noqa: E402

from bnlab.report import build_report  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

# writes what the test needs into document.title (read back with --dump-dom); runs after every image decodes
PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.title = 'IMAGES ' + imgs.length + ' DECODED ' + ok + ' ERRORS ' + (window.__errors || 0);
});
window.addEventListener('error', function () { window.__errors = (window.__errors || 0) + 1; }, true);
</script>"""

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (apt-get install -y chromium)"
)


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chromium")
    root = make_root(tmp / "runs", "smoke")
    return tmp, build_report(root, only=["E3", "E5", "E7", "E10", "E12a", "E12e"])


def test_screenshot_and_no_console_errors(report):
    tmp, path = report
    shot = tmp / "shot.png"
    res = chromium(
        tmp,
        "--enable-logging=stderr",
        "--v=0",
        f"--screenshot={shot}",
        "--window-size=1280,4000",
        path.as_uri(),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 50_000  # a blank page is a few kB
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "report.png")
    console = [line for line in res.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    # the page asks the network for nothing: no request lines for http(s) resources
    assert not re.search(r"https?://(?!127\.0\.0\.1)", "\n".join(console))


def test_every_image_decodes_and_no_script_error(report):
    tmp, path = report
    copy = tmp / "probe.html"
    copy.write_text(
        path.read_text(encoding="utf-8").replace("</head>", PROBE + "</head>", 1), encoding="utf-8"
    )
    res = chromium(tmp, "--dump-dom", "--virtual-time-budget=5000", copy.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    title = re.search(r"<title>(.*?)</title>", res.stdout)
    assert title, res.stdout[:500]
    m = re.fullmatch(r"IMAGES (\d+) DECODED (\d+) ERRORS (\d+)", title.group(1))
    assert m, f"the probe script did not run: title {title.group(1)!r}"
    n, decoded, errors = map(int, m.groups())
    assert n >= 6 and decoded == n and errors == 0
