"""Fixtures shared by the whole suite."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest

from tests.support.helpers import ITEMS_CSV
from tests.support.memory_keyring import MemoryKeyring
from tests.support.tryton import TrytonServer, build_template
from wms_client.sandbox.server import SandboxServer

pytest_plugins = ["tests.support.desktop"]


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    """Use an in-memory keyring backend for the test."""
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    MemoryKeyring.store = {}
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def token() -> str:
    """A fresh bearer token."""
    return secrets.token_urlsafe(16)


@pytest.fixture
def sandbox(tmp_path: Path, token: str) -> Iterator[SandboxServer]:
    """A real sandbox WMS on 127.0.0.1 with the sample items."""
    server = SandboxServer(tmp_path / "wms", ITEMS_CSV, token, port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tryton_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Tryton database set up for store S001, built once per test session."""
    return build_template(tmp_path_factory.mktemp("tryton-template"))


@pytest.fixture
def tryton(tmp_path: Path, tryton_template: Path) -> Iterator[TrytonServer]:
    """A real trytond on 127.0.0.1 serving a fresh copy of the template database."""
    server = TrytonServer(tmp_path / "tryton", tryton_template).start()
    try:
        yield server
    finally:
        server.stop()
