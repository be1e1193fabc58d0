from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from tests.support.helpers import write_config

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "possync.toml"


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_valid_config_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "http://127.0.0.1:8900"))
    assert config.agent.store_id == "S001"
    assert config.data_dir == (tmp_path / "data").resolve()
    assert config.outbox_path.parent == config.data_dir
    assert config.location == "S001"
    assert config.wms.batch_size == 50
    assert config.sync.max_retry_delay == 2.0
    (source,) = config.sources
    assert source.name == "pos-exports"


def test_each_mistake_names_file_line_and_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, "http://127.0.0.1:8900")
    text = path.read_text()
    text = text.replace('timezone = "America/Chicago"', 'timezone = "Mars/Olympus"')
    text = text.replace("batch_size = 50", 'batch_size = 5000\ncolour = "blue"')
    text = text.replace('quantity = "qty"\n', "")
    path.write_text(text)
    problems = errors_of(path)
    lines = text.splitlines()

    def line_of(fragment: str) -> int:
        return next(i for i, line in enumerate(lines, start=1) if fragment in line)

    assert any(
        p.startswith(f"{path}:{line_of('timezone')}: agent.timezone: 'Mars/Olympus' is not an IANA") for p in problems
    )
    assert any(p.startswith(f"{path}:{line_of('batch_size')}: wms.batch_size:") for p in problems)
    assert any(f":{line_of('colour')}: wms.colour: unknown key (allowed here:" in p for p in problems)
    assert any("[[sources]] #1 (pos-exports)" in p and "must map quantity" in p for p in problems)
    assert len(problems) == 4


def test_secret_written_in_the_file_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, "http://127.0.0.1:8900")
    path.write_text(path.read_text().replace('token = "env:POSSYNC_TEST_TOKEN"', 'token = "hunter2-plain"'))
    (problem,) = errors_of(path)
    assert "wms.token" in problem and "never written in the config file" in problem
    assert "hunter2" not in problem


def test_toml_syntax_error_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "possync.toml"
    path.write_text('[agent]\nstore_id = "S001"\nbroken = \n')
    (problem,) = errors_of(path)
    assert problem.startswith(f"{path}:3: not valid TOML")


def test_unknown_source_kind_and_duplicate_names(tmp_path: Path) -> None:
    path = write_config(tmp_path, "http://127.0.0.1:8900")
    text = path.read_text()
    path.write_text(
        text + '\n[[sources]]\nname = "pos-exports"\nkind = "carrier_pigeon"\n' + text[text.index("[[sources]]") :]
    )
    problems = errors_of(path)
    assert any("#2 (pos-exports) kind: source kind 'carrier_pigeon' is not available" in p for p in problems)
    assert any("#3 (pos-exports) name: another source is already named 'pos-exports'" in p for p in problems)


def test_missing_sections_and_unknown_sections(tmp_path: Path) -> None:
    path = tmp_path / "possync.toml"
    path.write_text("[agnet]\nstore_id = 'S1'\n")
    problems = errors_of(path)
    assert any("agnet: unknown section" in p for p in problems)
    assert any("the [agent] section is required" in p for p in problems)
    assert any("the [wms] section is required" in p for p in problems)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    (problem,) = errors_of(tmp_path / "missing.toml")
    assert "cannot read the config file" in problem


def test_the_example_config_is_valid_with_every_source_kind() -> None:
    config = load_config(EXAMPLE)
    assert [s.kind for s in config.sources] == ["file_drop", "file_drop", "http_ingest", "serial_tap"]
    assert config.agent.api_token == "keyring:possync/api" and config.wms.token == "keyring:possync/wms"


def test_stock_and_reconcile_sections(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    defaults = load_config(config)
    assert defaults.export_path is None and defaults.report_dir == defaults.data_dir / "reports"
    assert defaults.reconcile.at == "02:30" and defaults.reconcile.drift_threshold == 0
    text = config.read_text()
    config.write_text(text + '\n[stock]\nexport_dir = "./pos"\nexport_columns = ["sku", "available"]\n')
    loaded = load_config(config)
    assert loaded.export_path == tmp_path / "pos" / "stock.csv" and loaded.stock.export_columns == ["sku", "available"]
    config.write_text(text + '\n[stock]\nexport_columns = ["sku", "price"]\n[reconcile]\nat = "25:00"\n')
    problems = errors_of(config)
    assert any("stock.export_columns" in p and "unknown column(s) price" in p for p in problems)
    assert any("reconcile.at" in p for p in problems)


HTTP_INGEST = '\n[[sources]]\nname = "{name}"\nkind = "http_ingest"\n'


def test_http_ingest_without_the_local_api_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, "http://127.0.0.1:8900", sources=HTTP_INGEST.format(name="pos-push"))
    lines = path.read_text().splitlines()
    (problem,) = errors_of(path)
    kind_line = next(i for i, line in enumerate(lines, start=1) if 'kind = "http_ingest"' in line)
    assert problem.startswith(f"{path}:{kind_line}: [[sources]] #1 (pos-push) kind:")
    assert "set agent.api_token" in problem


def test_a_second_http_ingest_source_is_refused(tmp_path: Path) -> None:
    sources = HTTP_INGEST.format(name="till-1") + HTTP_INGEST.format(name="till-2")
    path = write_config(tmp_path, "http://127.0.0.1:8900", sources=sources)
    path.write_text(path.read_text().replace('data_dir = "./data"', 'data_dir = "./data"\napi_token = "env:API_T"'))
    (problem,) = errors_of(path)
    assert "#2 (till-2) kind: only one http_ingest source per agent" in problem


def test_http_ingest_with_the_local_api_loads(tmp_path: Path) -> None:
    path = write_config(tmp_path, "http://127.0.0.1:8900", sources=HTTP_INGEST.format(name="pos-push"))
    path.write_text(path.read_text().replace('data_dir = "./data"', 'data_dir = "./data"\napi_token = "env:API_T"'))
    assert [s.kind for s in load_config(path).sources] == ["http_ingest"]
