"""The HTML reports of an evaluation and of a comparison: read back with ``html.parser``, and
rendered in headless Chromium where it is installed."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from itertools import takewhile
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from evaluation.compare import compare_runs
from evaluation.html_report import RELIABILITY_DIAGRAM, run_section, write_run_report
from evaluation.report import evaluate_checkpoint
from tests.conftest import tiny_config
from training.trainer import fit
from utils.checkpoint import load_checkpoint
from utils.errors import UserError

PNG_DATA_URI = "data:image/png;base64,"
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

# Put at the top of a copy of a report, this records every error the page meets while it loads:
# uncaught script errors, console.error calls, and resources that fail to load or decode (their
# error events do not bubble, hence the capture phase). Once loaded it writes them, with a count
# of the images that decoded, into an attribute that --dump-dom prints. Unlike Chromium's own
# console logging on stderr (mixed with its D-Bus and GPU noise, and silent about a broken
# image), this needs no log format, and a page where it never ran has no attribute: no false pass.
PROBE = """<script>
const problems = [];
addEventListener("error", (e) => problems.push(e.message || `failed to load ${e.target.tagName}`),
                 true);
const consoleError = console.error;
console.error = (...args) => { problems.push(args.join(" ")); consoleError(...args); };
addEventListener("load", () => {
  const images = [...document.images];
  const decoded = images.filter((image) => image.naturalWidth > 0).length;
  document.documentElement.dataset.probe = JSON.stringify({problems, images: images.length,
                                                           decoded});
});
</script>"""


class Page(HTMLParser):
    """What the tests read of a page: every tag, the numbers, the text of each table row."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.numbers: dict[tuple[str | None, str], float] = {}  # (class or None, metric)
        self.rows: list[list[str]] = []
        self._row_class: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        if tag == "tr":
            self._row_class = found.get("data-class")
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell = []
        if "data-metric" in found:
            self.numbers[self._row_class, found["data-metric"]] = float(found["data-value"])

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def images(self) -> list[str]:
        return [attrs["src"] or "" for tag, attrs in self.tags if tag == "img"]

    def links(self) -> list[str]:
        return [attrs["href"] or "" for tag, attrs in self.tags if "href" in attrs]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-epoch smoke run evaluated on its validation split: (run dir, its report.html)."""
    tmp = tmp_path_factory.mktemp("html")
    run_dir = tmp / "smoke"
    fit(tiny_config("smoke", tmp, "train.epochs=1"), run_dir)
    path = run_dir / "best.pt"
    report = evaluate_checkpoint(load_checkpoint(path), path, out_dir=run_dir / "eval-val")
    return run_dir, Path(report["html_report"])


def test_the_run_report_holds_the_numbers_of_metrics_json(evaluated: tuple[Path, Path]) -> None:
    _, html = evaluated
    metrics = json.loads((html.parent / "metrics.json").read_text())
    numbers = Page(html.read_text()).numbers
    for key in ("accuracy", "loss", "top5_accuracy", "macro_f1", "ece"):
        assert numbers.get((None, key)) == metrics.get(key), key  # ECE: if it is measured
    for name, stats in metrics["per_class"].items():
        for key in ("precision", "recall", "f1"):
            assert numbers[name, key] == stats[key], (name, key)


def test_the_run_report_describes_the_run(evaluated: tuple[Path, Path]) -> None:
    run_dir, html = evaluated
    rows = Page(html.read_text()).rows
    hardware = json.loads((run_dir / "summary.json").read_text())["hardware"]
    assert ["hardware", hardware] in rows and ["arch", "resnet18"] in rows
    assert ["lr", "0.05"] in rows and ["epochs", "1"] in rows  # the checkpoint's config
    (epochs,) = [i for i, row in enumerate(rows) if row[:3] == ["epoch", "train_loss", "train_acc"]]
    history = list(takewhile(lambda row: row[0].isdigit(), rows[epochs + 1 :]))
    assert [row[0] for row in history] == ["1"]  # the one epoch trained


def test_every_image_of_the_run_report_is_embedded(evaluated: tuple[Path, Path]) -> None:
    _, html = evaluated
    page = Page(html.read_text())
    images = page.images()
    assert len(images) == len(list(html.parent.glob("*.png"))) >= 4  # the plots and the curves
    for src in images:
        assert src.startswith(PNG_DATA_URI)
        assert base64.b64decode(src.removeprefix(PNG_DATA_URI)).startswith(b"\x89PNG")
    assert not page.links()
    assert not [tag for tag, attrs in page.tags if tag in ("link", "script", "iframe")]
    assert "url(" not in html.read_text()  # nor a stylesheet fetching one


def test_calibration_ece_and_tta_appear_when_the_evaluation_has_them(
    evaluated: tuple[Path, Path], tmp_path: Path
) -> None:
    run_dir, html = evaluated
    config = load_checkpoint(run_dir / "best.pt")["config"]
    report = json.loads((html.parent / "metrics.json").read_text())
    report["plots"] = [str(p) for p in html.parent.glob("*.png") if p.name != RELIABILITY_DIAGRAM]
    without = {k: v for k, v in report.items() if k not in ("ece", "tta")}
    text = write_run_report(without, config, run_dir, tmp_path).read_text()
    page = Page(text)
    assert (None, "ece") not in page.numbers and "<h2>Calibration</h2>" not in text
    assert len(page.images()) == len(report["plots"])

    shutil.copy(html.parent / "confusion_matrix.png", tmp_path / RELIABILITY_DIAGRAM)
    report |= {"ece": 0.0421, "tta": {"mode": "flip", "views": 2}}
    page = Page(write_run_report(report, config, run_dir, tmp_path).read_text())
    assert page.numbers[None, "ece"] == 0.0421
    assert ["views", "2"] in page.rows
    assert len(page.images()) == len(report["plots"]) + 1  # and the reliability diagram


@needs_chromium
def test_the_run_report_renders_in_chromium_without_errors(
    evaluated: tuple[Path, Path], tmp_path: Path
) -> None:
    _, html = evaluated
    probed = tmp_path / "probed.html"  # a copy away from the plots: it must not need them
    probed.write_text(html.read_text().replace("<head>", "<head>\n" + PROBE, 1))
    dom = chromium(tmp_path, "--dump-dom", probed.as_uri()).stdout
    (found,) = [attrs for tag, attrs in Page(dom).tags if tag == "html"]
    probe = json.loads(found["data-probe"] or "")
    images = len(list(html.parent.glob("*.png")))
    assert probe == {"problems": [], "images": images, "decoded": images}

    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1366,900", html.as_uri())
    with Image.open(shot) as image:
        assert image.size == (1366, 900)
        gray = image.convert("L")
    low, high = gray.getextrema()
    assert high - low > 100 and ImageStat.Stat(gray).stddev[0] > 5  # text and plots, not blank


def test_the_comparison_report_holds_each_row_and_links_the_run_reports(
    evaluated: tuple[Path, Path], tmp_path: Path
) -> None:
    run_dir, run_report = evaluated
    variant = tmp_path / "smoke-copy"  # a second recipe: the records of the run, renamed
    shutil.copytree(run_dir, variant, ignore=shutil.ignore_patterns("*.pt", "eval-*"))
    config = variant / "config.yaml"
    config.write_text(config.read_text().replace("name: smoke", "name: smoke-copy", 1))
    first = compare_runs([run_dir], tmp_path / "first")
    gone = {**first["rows"][0], "group": "other", "runs": [str(tmp_path / "gone")]}
    (tmp_path / "ref.json").write_text(json.dumps([gone]))

    out = tmp_path / "out"
    result = compare_runs([run_dir, variant], out, "table", reference=tmp_path / "ref.json")
    page = Page((out / "table_report.html").read_text())
    header, *rows = page.rows
    markdown = [
        line[2:-2].split(" | ")
        for line in (out / "table.md").read_text().splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    assert [*markdown[0], "reports"] == header
    assert [row[:-1] for row in rows] == markdown[1:]  # the same cells as the markdown
    by_group = dict(zip([r["group"] for r in result["rows"]], rows, strict=True))
    assert by_group["other"][0] == "other †" and by_group["other"][-1] == "none"
    for group, row in by_group.items():
        numbers = result["rows"][[r["group"] for r in result["rows"]].index(group)]
        assert row[header.index("val acc (%)")] == f"{numbers['val_acc_mean']:.2f}"
        assert row[header.index("val loss")] == f"{numbers['val_loss_mean']:.4f}"
    assert by_group["smoke"][-1] == "smoke val" and by_group["smoke-copy"][-1] == "none"
    (link,) = page.links()
    assert (out / link).resolve() == run_report.resolve()
    # the two validation plots and accuracy against compute; no scores plot, as no run was
    # scored on the test split
    assert [src[: len(PNG_DATA_URI)] for src in page.images()] == [PNG_DATA_URI] * 3
    plots = ["table_val_loss.png", "table_val_acc.png", "table_compute.png"]
    assert [png.name for png in result["plots"]] == plots


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with a fresh profile and nothing fetched on its own account."""
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic", f"--user-data-dir={profile}",
    ]  # fmt: skip
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=True
    )


def test_a_broken_summary_is_one_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text('{"hardware": "cpu",')
    with pytest.raises(UserError, match=r"summary\.json cannot be read"):
        run_section({}, tmp_path / "summary.json")
    (tmp_path / "summary.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="expected a JSON object"):
        run_section({}, tmp_path / "summary.json")
