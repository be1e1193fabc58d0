"""The PyInstaller build of this checkout, made once and reused while the sources are unchanged."""

from __future__ import annotations

import fcntl
import hashlib
import sys
from importlib.metadata import distributions
from pathlib import Path

from installer.build import ROOT, build, executable_path

PACKAGES = ("agent", "pos_adapters", "wms_client", "outbox", "installer")
DIST = ROOT / "dist"
STAMP = DIST / "possync.sources"


def sources_digest() -> str:
    """A digest of what goes into the executable: sources, assets, templates, the spec, installed packages."""
    digest = hashlib.sha256()
    files = [ROOT / "pyproject.toml"]
    for package in PACKAGES:
        files += [p for p in (ROOT / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    for path in sorted(files):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())
    # What is installed is bundled too (e.g. PyGObject adds pystray's gtk backends): rebuild when it changes.
    installed = sorted(f"{d.metadata['Name']}=={d.version}" for d in distributions())
    digest.update("\n".join(installed).encode())
    return digest.hexdigest()


def frozen_executable() -> tuple[Path, float | None]:
    """The one-folder executable of the current sources and the build time (None when reused).

    Parallel test workers share ``dist/``: a file lock makes one build while the others wait and reuse it.
    """
    executable = executable_path(DIST, onefile=False)
    digest = sources_digest()
    DIST.mkdir(exist_ok=True)
    with open(DIST / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if executable.exists() and STAMP.exists() and STAMP.read_text().strip() == digest:
            return executable, None
        result = build(DIST)
        STAMP.write_text(digest + "\n")
        return result.executable, result.seconds
