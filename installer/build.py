"""``python -m installer build``: the self-contained possync executable, built with PyInstaller.

Invariants: the output is ``dist/possync/possync`` (one folder) or ``dist/possync`` (``--onefile``),
built from this checkout with the spec next to this module; the version comes from the installed
package's metadata, so ``possync version`` of the binary names the same version as the sources.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = Path(__file__).resolve().parent / "possync.spec"
EXE_SUFFIX = ".exe" if sys.platform == "win32" else ""


@dataclass(frozen=True, slots=True)
class BuildResult:
    """Where the executable is, how big the output is and how long the build took."""

    executable: Path
    size_bytes: int
    seconds: float


def executable_path(dist: Path, onefile: bool) -> Path:
    """Return where a build puts the executable."""
    name = f"possync{EXE_SUFFIX}"
    return dist / name if onefile else dist / "possync" / name


def tree_size(path: Path) -> int:
    """Bytes in a file, or in every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def windows_version_file(ver: str, target: Path) -> Path:
    """Write a PyInstaller version resource (Windows file properties) for ``ver``."""
    parts = [int(p) if p.isdigit() else 0 for p in ver.split("+")[0].split(".")[:3]]
    numbers = (*parts, *([0] * (4 - len(parts))))
    target.write_text(
        f"""VSVersionInfo(
  ffi=FixedFileInfo(filevers={numbers}, prodvers={numbers}),
  kids=[StringFileInfo([StringTable('040904B0', [
    StringStruct('CompanyName', 'possync'),
    StringStruct('FileDescription', 'possync store agent'),
    StringStruct('FileVersion', '{ver}'),
    StringStruct('ProductName', 'possync'),
    StringStruct('ProductVersion', '{ver}')])]),
    VarFileInfo([VarStruct('Translation', [1033, 1200])])]
)
""",
        encoding="utf-8",
    )
    return target


def build(dist: Path = ROOT / "dist", *, onefile: bool = False, work: Path | None = None) -> BuildResult:
    """Run PyInstaller on the spec; raise ``RuntimeError`` with its output when it fails."""
    started = time.monotonic()
    ver = version("possync")
    env = {**os.environ, "PYSTRAY_BACKEND": "dummy", "POSSYNC_ONEFILE": "1" if onefile else "0"}
    with tempfile.TemporaryDirectory(prefix="possync-build-") as scratch:
        if sys.platform == "win32":
            env["POSSYNC_VERSION_FILE"] = str(windows_version_file(ver, Path(scratch) / "version.txt"))
        command = [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--clean",
            "--log-level",
            "WARN",
            "--distpath",
            str(dist),
            "--workpath",
            str(work or Path(scratch) / "work"),
            str(SPEC),
        ]
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"PyInstaller failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    executable = executable_path(dist, onefile)
    if not executable.exists():
        raise RuntimeError(f"PyInstaller succeeded but {executable} is missing")
    (dist / "possync.version").write_text(ver + "\n", encoding="utf-8")
    output = executable if onefile else executable.parent
    return BuildResult(executable, tree_size(output), time.monotonic() - started)
