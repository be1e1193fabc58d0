"""Documented or it fails: config keys, CLI commands and flags, source kinds, the protocol file."""

import json
import re
from pathlib import Path

import pytest

from agent.cli import build_parser
from agent.config import AgentSettings, SyncSettings
from pos_adapters.base import REGISTRY as SOURCE_KINDS
from pos_adapters.csv_format import FIELDS
from wms_client.base import REGISTRY as WMS_KINDS
from wms_client.sandbox.openapi import render

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def documented_keys(text: str) -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))


def test_every_agent_sync_and_wms_key_is_documented() -> None:
    keys = documented_keys((DOCS / "configuration.md").read_text())
    missing = [f"agent.{k}" for k in AgentSettings.model_fields if k not in keys]
    missing += [f"sync.{k}" for k in SyncSettings.model_fields if k not in keys]
    for kind, registered in WMS_KINDS.items():
        missing += [f"wms({kind}).{k}" for k in registered.settings.model_fields if k not in keys]
    assert not missing, f"undocumented config keys: {missing}"


@pytest.mark.parametrize("kind", sorted(SOURCE_KINDS))
def test_every_source_kind_has_a_page_with_every_key(kind: str) -> None:
    page = DOCS / "sources" / f"{kind}.md"
    assert page.exists(), f"docs/sources/{kind}.md is missing"
    keys = documented_keys(page.read_text())
    missing = [k for k in SOURCE_KINDS[kind].settings.model_fields if k not in keys]
    assert not missing, f"{kind}: undocumented keys {missing}"
    assert f"`{kind}`" in (DOCS / "configuration.md").read_text()


def test_every_csv_column_field_is_documented() -> None:
    keys = documented_keys((DOCS / "sources" / "file_drop.md").read_text())
    assert not [f for f in FIELDS if f not in keys]


def _commands(parser, prefix=()):  # type: ignore[no-untyped-def]
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _commands(sub, (*prefix, name))


def test_every_cli_command_and_flag_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    missing = []
    for path, sub in _commands(build_parser()):
        if f"possync {' '.join(path)}" not in text and not (
            len(path) == 2 and f"`possync {path[0]}" in text and path[1] in text
        ):
            missing.append(" ".join(path))
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help" and flag not in text:
                    missing.append(f"{' '.join(path)} {flag}")
    assert not missing, f"undocumented commands/flags: {missing}"


def test_openapi_file_matches_the_sandbox() -> None:
    committed = (DOCS / "wms-protocol.openapi.json").read_text()
    assert json.loads(committed) == json.loads(render()), (
        "regenerate: python -m wms_client.sandbox.openapi > docs/wms-protocol.openapi.json"
    )


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, flags=re.DOTALL)
    assert len(blocks) >= 2
    demo, tests = blocks[0].strip(), blocks[1].strip()
    assert demo.endswith("possync demo") and "pytest" in tests
    assert tests in (ROOT / ".ci" / "run").read_text()


def test_docs_links_resolve() -> None:
    for page in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith("http"):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"
