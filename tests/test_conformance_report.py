"""``python -m conformance.report``: the conformance page comes from the newest full run."""

from __future__ import annotations

import json
from pathlib import Path

from conformance import report


def write_run(results: Path, name: str, verdict: dict[str, object], *, full: bool = True) -> None:
    run = results / name
    (run / "checks" / "server-ping-2026-01-01T00-00-00-000Z").mkdir(parents=True)
    (run / "verdict.json").write_text(json.dumps(verdict))
    (run / ("suite-output.log" if full else "suite-output-ping.log")).write_text("")
    (run / "checks" / "server-ping-2026-01-01T00-00-00-000Z" / "checks.json").write_text(json.dumps([
        {"id": "ping", "description": "Server responds to ping requests", "status": "SUCCESS"},
    ]))


def verdict(passed: int, failed: int, *, ok: bool = True, unexpected: list[str] | None = None) -> dict[str, object]:
    return {
        "requirements": "2025-11-25", "ok": ok, "unexpected": unexpected or [], "expected": [],
        "stale": [], "scenarios": {"ping": {"ran": True, "passed": passed, "failed": failed}},
    }


def test_the_page_reports_the_newest_full_run(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_run(results, "2025-11-25-20260101T000000Z", verdict(2, 0))
    write_run(results, "2025-11-25-20260102T000000Z", verdict(1, 1, ok=False, unexpected=["ping:ping"]))
    # Newer, but a --scenario run: it judged only what it named, so it is not the report.
    write_run(results, "2025-11-25-20260103T000000Z", verdict(2, 0), full=False)
    output = tmp_path / "report.md"

    assert report.main(["--results", str(results), "--output", str(output)]) == 0

    page = output.read_text()
    suite, node = report.pinned_versions(report.HERE / "package-lock.json")
    assert f"`@modelcontextprotocol/conformance` **{suite}** (on Node {node}" in page
    assert "## Requirement set 2025-11-25" in page
    assert "Run finished 2026-01-02 00:00 UTC. Verdict: **FAILED**; 1 scenarios, 1 checks passed, 1 failed" in page
    assert "Unexpected failures:\n\n- `ping:ping`" in page
    assert "| `ping` | **1 of 2 failed** | Server responds to ping requests |" in page


def test_no_full_run_is_an_error(tmp_path: Path) -> None:
    assert report.main(["--results", str(tmp_path), "--output", str(tmp_path / "r.md")]) == 2
    assert not (tmp_path / "r.md").exists()
