"""The run summary and the HTML report of one real pipeline run on the tiny world.

The page is rendered by headless Chromium: a screenshot must come out, and the DOM Chromium
builds must hold the metrics table and only images that exist and are valid PNGs. Chromium is
required (``apt-get install -y chromium``; ``.ci/run`` installs it): without it the test fails.
"""

import json
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from components.report import REPORT_FILE, SUMMARY_FILE, write_report, write_summary
from components.runner import PipelineParams, run_local
from feature_repo import layout

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STAGES = {"new", "wander", "stick", "loyal"}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found is None:
        pytest.fail(
            "headless Chromium renders the report and is missing: install it with "
            "`apt-get update && apt-get install -y chromium` (.ci/run does this)"
        )
    return found


def _browse(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    command = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs).get("src", ""))


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.append(dict(attrs).get("href", ""))


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk; fails unless ``path`` starts as a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _strict_json(text: str) -> dict:
    def no_constants(name):
        raise AssertionError(f"summary.json holds {name}: NaN must be written as null")

    return json.loads(text, parse_constant=no_constants)


@pytest.fixture(scope="module")
def run(tiny_world, tmp_path_factory):
    """One pipeline run on a copy of the tiny world, then its summary and report."""
    home = tmp_path_factory.mktemp("report") / "home"
    shutil.copytree(tiny_world, home)
    start = time.perf_counter()
    result = run_local(
        PipelineParams(home=str(home), logical_date="2026-01-14", window_days=8, epochs=1)
    )
    timings = {"pipeline": time.perf_counter() - start}
    run_dir = Path(result["run_dir"])
    out = home / "runs" / run_dir.name
    validation = {"success": True, "failed_expectations": []}
    summary = write_summary(
        run_dir,
        out,
        run_id=run_dir.name,
        logical_date="2026-01-14",
        timings_s=timings,
        validation=validation,
        champion_uri=None,
        extra={"note": "<b>escaped</b>"},
    )
    docs = layout.data_docs_index(home)
    assert docs.exists(), f"{docs}: the training set's validation wrote no Data Docs"
    report = write_report(summary, run_dir, out, docs)
    return {"home": home, "run_dir": run_dir, "out": out, "summary": summary, "report": report}


@pytest.mark.integration
def test_summary_has_every_field(run):
    written = _strict_json((run["out"] / SUMMARY_FILE).read_text())
    assert written == run["summary"]
    s = written
    assert s["run_id"] == run["run_dir"].name and s["logical_date"] == "2026-01-14"
    tasks = set(s["tasks"])
    assert tasks == {"ctr", "stay", "cvr"}

    data = s["data"]
    for split in ("train", "valid", "test"):
        assert isinstance(data[split]["rows"], int) and data[split]["rows"] > 0
        assert 0 < data[split]["users"] <= data["users"]
    assert sum(data[p]["rows"] for p in ("train", "valid", "test")) == data["rows"]
    assert data["train"]["last_day"] < data["valid"]["first_day"]
    assert data["valid"]["last_day"] < data["test"]["first_day"]
    assert data["test"]["last_day"] == "2026-01-14"
    evaluation = json.loads(
        (run["run_dir"] / "evaluate-model" / "evaluation" / "evaluation.json").read_text()
    )
    assert data["test"]["rows"] == evaluation["n_samples"]

    assert s["validation"] == {"success": True, "failed_expectations": []}
    for family in ("stan", "ple"):
        assert set(s["metrics"][family]) == tasks
        for values in s["metrics"][family].values():
            assert 0.0 <= values["auc"] <= 1.0 and 0.0 <= values["ndcg@5"] <= 1.0
        for by_stage in (s["metrics_by_stage"], s["metrics_by_latent_stage"]):
            assert set(by_stage[family]) == tasks
            for per_stage in by_stage[family].values():
                assert set(per_stage) == STAGES
                assert all(v is None or 0.0 <= v <= 1.0 for v in per_stage.values())
        assert 0.0 <= s["probe"][family]["balanced_accuracy"] <= 1.0
    assert s["metrics"]["stan"] != s["metrics"]["ple"]

    gate = s["gate"]
    assert gate["decision"] in ("promote", "reject")
    assert gate["reasons"] and all(isinstance(r, str) for r in gate["reasons"])
    assert gate["overridden"] is False
    assert s["model_uri"] == str(run["home"] / "registry" / "versions" / s["model_version"])
    assert Path(s["model_uri"], "model.safetensors").is_file()
    assert s["champion_uri"] is None
    assert s["timings_s"]["pipeline"] > 0
    assert s["home"] == str(run["home"]) and s["note"] == "<b>escaped</b>"


@pytest.mark.integration
def test_write_summary_refuses_to_replace_a_field(run, tmp_path):
    with pytest.raises(ValueError, match="gate"):
        write_summary(
            run["run_dir"],
            tmp_path,
            run_id="x",
            logical_date="2026-01-14",
            timings_s={},
            validation={"success": True},
            champion_uri=None,
            extra={"gate": "forged"},
        )


@pytest.mark.integration
def test_report_renders_in_headless_chromium(run, tmp_path):
    report = run["report"]
    assert report == run["out"] / REPORT_FILE
    url = report.resolve().as_uri()

    shot = tmp_path / "report.png"
    _browse(tmp_path, f"--screenshot={shot}", "--window-size=1200,2400", url)
    assert _png_size(shot) == (1200, 2400)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert shot.stat().st_size > 50_000 and float(np.std(pixels)) > 0.05, "screenshot is blank"
    shutil.copyfile(shot, run["out"] / "screenshot.png")  # kept beside the report to look at

    dom = _browse(tmp_path, "--dump-dom", url).stdout
    assert "<table" in dom and "STAN" in dom and "PLE" in dom
    for task in run["summary"]["tasks"]:
        assert f"<td>{task}</td>" in dom
    assert run["summary"]["gate"]["decision"] in dom
    docs = _Links()
    docs.feed(dom)
    assert [(report.parent / h).resolve() for h in docs.hrefs] == [
        layout.data_docs_index(run["home"]).resolve()
    ]
    images = _Images()
    images.feed(dom)
    assert len(images.sources) == 3
    for src in images.sources:
        assert "/" not in src and ":" not in src, f"{src}: links must be relative, local"
        width, height = _png_size(report.parent / src)
        assert width > 300 and height > 200
        assert matplotlib.image.imread(report.parent / src).ndim == 3


@pytest.mark.integration
def test_report_escapes_text(run, tmp_path):
    summary = json.loads(json.dumps(run["summary"]))
    summary["run_id"] = "<i>run</i>"
    summary["gate"]["reasons"] = ["FAIL <script>alert(1)</script>"]
    page = write_report(summary, run["run_dir"], tmp_path, None).read_text()
    assert "&lt;i&gt;run&lt;/i&gt;" in page and "<i>run</i>" not in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<a href" not in page  # no Data Docs given, no link
