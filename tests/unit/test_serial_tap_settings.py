"""Config validation of serial_tap sources: every mistake named with its key; the settings on a loop:// port."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from tests.support.helpers import write_config

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "possync.toml"


def tap(**keys: object) -> str:
    body = {"name": "receipt-tap", "kind": "serial_tap", "port": "/dev/ttyUSB0", "template": "generic-58mm", **keys}
    lines = ["[[sources]]"]
    tables = []
    for key, value in body.items():
        if value is None:
            continue
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml(value)}")
    for key, table in tables:
        lines.append(f"[sources.{key}]")
        lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value + "'"
    return str(value)


def problems(tmp_path: Path, **keys: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, "http://127.0.0.1:9", sources=tap(**keys)))
    return caught.value.problems


def test_the_example_configs_receipt_tap_is_valid() -> None:
    (tap_source,) = [s for s in load_config(EXAMPLE).sources if s.name == "receipt-tap"]
    assert tap_source.kind == "serial_tap"


def test_defaults_and_all_keys(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            "http://127.0.0.1:9",
            sources=tap(
                passthrough="/dev/ttyUSB1",
                baudrate=19200,
                bytesize=7,
                parity="even",
                stopbits=1.5,
                rtscts=True,
                idle_gap="500ms",
                encoding="cp858",
                terminal="R9",
                receipt_retention_days=30,
                reconnect_every="5s",
            ),
        )
    )
    (source,) = config.sources
    assert source.kind == "serial_tap" and source.idle_gap == 0.5 and source.stopbits == 1.5  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"template": "generic-80mm"}, "no built-in template 'generic-80mm' (built-in: generic-58mm, upc-80mm)"),
        ({"template_file": "mine.toml"}, "set exactly one of template"),
        ({"template": None}, "set exactly one of template"),
        ({"passthrough": "/dev/ttyUSB0"}, "passthrough must be the printer's port"),
        ({"encoding": "klingon"}, "'klingon' is not a text encoding"),
        ({"stopbits": 3}, "stopbits is 1, 1.5 or 2"),
        ({"parity": "sometimes"}, "parity"),
        ({"idle_gap": "10ms"}, "shorter than 50 ms"),
        ({"baud": 9600}, "unknown key"),
        (
            {"template": {"transaction": "T", "datetime": "D", "item": "(?P<item>x"}},
            "item: not a valid regular expression",
        ),
    ],
)
def test_mistakes_are_named(tmp_path: Path, keys: dict[str, object], message: str) -> None:
    found = problems(tmp_path, **keys)
    assert any(message in p and "receipt-tap" in p for p in found), found


def test_an_inline_template_validates(tmp_path: Path) -> None:
    inline = {
        "transaction": r"TXN (\S+)",
        "datetime": r"(\d{4}-\d\d-\d\d \d\d:\d\d)",
        "item": r"(?P<quantity>\d+) x (?P<item>\S+)",
    }
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9", sources=tap(template=inline)))
    assert config.sources[0].template.transaction == r"TXN (\S+)"  # type: ignore[attr-defined]


def test_a_pyserial_url_opens_with_the_line_settings_and_carries_bytes() -> None:
    import serial

    from pos_adapters.serial_tap import SerialTapSettings, open_port

    settings = SerialTapSettings.model_validate(
        {"name": "tap", "kind": "serial_tap", "port": "loop://", "template": "generic-58mm"}
        | {"baudrate": 19200, "parity": "even", "bytesize": 7, "stopbits": 2, "xonxoff": True}
    )
    port = open_port(settings.port, settings, timeout=0.5)
    try:
        assert port.is_open and (port.baudrate, port.parity, port.bytesize, port.stopbits) == (
            19200,
            serial.PARITY_EVEN,
            7,
            2,
        )
        assert port.xonxoff and not port.rtscts
        port.write(b"\x1b@RECEIPT\n\x1dV\x00")  # a URL port is never opened exclusively, and reads back
        assert port.read(14) == b"\x1b@RECEIPT\n\x1dV\x00"
    finally:
        port.close()
