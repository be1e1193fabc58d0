"""Golden contract tests: every source kind turns recorded inputs into exactly the expected lines.

Layout (DESIGN.md): ``tests/fixtures/<source-kind>/<case>/`` holds
- ``config.toml``: one ``[source]`` table (the ``[[sources]]`` entry) and optionally ``[agent]``
  (``store_id``, ``timezone``, ``location``);
- ``input`` or ``input.<ext>``: the recorded input;
- ``expected.jsonl``: one line per produced movement ``{"movement": {...}}`` (the wire form without
  ``source``), per issue ``{"issue": {"code": ..., "source_ref": ..., "message_contains": ...}}``
  and per post-void ``{"post_void": {...}}`` (the wire form without ``source``), in the order the
  source produces them (per batch: its movements, then its issues, then its post-voids).

Regenerate a case after an intended change with ``POSSYNC_REGOLD=1 pytest tests/contract``, then read
the diff before committing it.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.kinds import load_kinds
from pos_adapters.base import REGISTRY, Batch, SourceContext

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
load_kinds()


def cases() -> list[Path]:
    return sorted(p for p in FIXTURES.glob("*/*") if (p / "config.toml").exists())


def run_case(case: Path) -> list[dict[str, Any]]:
    config = tomllib.loads((case / "config.toml").read_text(encoding="utf-8"))
    agent = config.get("agent", {})
    source = config["source"]
    kind = REGISTRY[source["kind"]]
    assert kind.replay is not None, f"source kind {source['kind']} has no replay"
    settings = kind.settings.model_validate(source)
    ctx = SourceContext(
        store_id=agent.get("store_id", "S001"),
        timezone=ZoneInfo(agent.get("timezone", "America/Chicago")),
        base_dir=case,
        data_dir=case,
        location=agent.get("location", agent.get("store_id", "S001")),
    )
    (input_path,) = [p for p in case.iterdir() if p.name == "input" or p.name.startswith("input.")]
    return produced(kind.replay(settings, ctx, input_path))


def produced(batches: Iterable[Batch]) -> list[dict[str, Any]]:
    """Return the batches in the ``expected.jsonl`` form (movements, issues, post-voids; no ``source``)."""
    out: list[dict[str, Any]] = []
    for batch in batches:
        for movement in batch.movements:
            wire = movement.to_wire()
            wire.pop("source")
            out.append({"movement": wire})
        for issue in batch.issues:
            out.append({"issue": {"code": issue.code, "source_ref": issue.source_ref, "message": issue.message}})
        for void in batch.voids:
            wire = void.to_wire()
            wire.pop("source")
            out.append({"post_void": wire})
    return out


def matches(expected: dict[str, Any], got: dict[str, Any]) -> bool:
    if "issue" in expected:
        want = expected["issue"]
        have = got.get("issue", {})
        return (
            want["code"] == have.get("code")
            and want["source_ref"] == have.get("source_ref")
            and want.get("message_contains", "") in have.get("message", "")
        )
    return expected == got


@pytest.mark.parametrize("case", cases(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_case(case: Path) -> None:
    produced = run_case(case)
    expected_path = case / "expected.jsonl"
    if os.environ.get("POSSYNC_REGOLD"):
        lines = []
        for item in produced:
            if "issue" in item:
                issue = item["issue"]
                item = {
                    "issue": {
                        "code": issue["code"],
                        "source_ref": issue["source_ref"],
                        "message_contains": issue["message"],
                    }
                }
            lines.append(json.dumps(item, sort_keys=True))
        expected_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = [json.loads(line) for line in expected_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(produced) == len(expected), f"{len(produced)} produced, {len(expected)} expected"
    for i, (want, got) in enumerate(zip(expected, produced, strict=True)):
        assert matches(want, got), f"line {i + 1}: expected {want}, got {got}"


def test_every_source_kind_with_a_replay_has_golden_cases() -> None:
    kinds_with_cases = {p.parent.name for p in cases()}
    missing = [k for k, v in REGISTRY.items() if v.replay is not None and k not in kinds_with_cases]
    assert not missing, f"source kinds without golden cases in tests/fixtures: {missing}"
