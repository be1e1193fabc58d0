"""A service plan: the files to write and the commands to run, computed first and then carried out.

Invariants: generating a plan touches nothing, so every platform's plan is unit-tested on any OS;
``execute`` writes files atomically and stops at the first failing command with its output.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePath


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A file a plan writes."""

    path: PurePath
    content: str
    mode: int = 0o644


@dataclass(slots=True)
class Plan:
    """What one service action does."""

    files: list[FileSpec] = field(default_factory=list)
    prelude: list[list[str]] = field(default_factory=list)  # run first; failure ignored (e.g. stop an old copy)
    commands: list[list[str]] = field(default_factory=list)
    remove: list[PurePath] = field(default_factory=list)
    tolerate_failure: bool = False  # e.g. stopping a service that is not running

    def describe(self) -> str:
        """Return the plan in words (``--dry-run``)."""
        lines = [f"write {f.path} (mode {f.mode:o})" for f in self.files]
        lines += [f"remove {p}" for p in self.remove]
        lines += ["run " + " ".join(_quote(part) for part in command) + " (may fail)" for command in self.prelude]
        lines += ["run " + " ".join(_quote(part) for part in command) for command in self.commands]
        return "\n".join(lines)


class PlanFailed(RuntimeError):
    """A command of a plan failed; the message has its output."""


def _quote(part: str) -> str:
    return f'"{part}"' if (" " in part or not part) else part


def execute(plan: Plan) -> list[subprocess.CompletedProcess[str]]:
    """Carry out ``plan``; raise ``PlanFailed`` naming the command that failed and what it said."""
    for spec in plan.files:
        path = Path(spec.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp")
        temp.write_text(spec.content, encoding="utf-8")
        temp.chmod(spec.mode)
        temp.replace(path)
    for target in plan.remove:
        Path(target).unlink(missing_ok=True)
    for command in plan.prelude:
        try:
            subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        except OSError:
            continue
    results = []
    for command in plan.commands:
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        except OSError as exc:
            raise PlanFailed(f"cannot run {command[0]}: {exc.strerror or exc}") from None
        results.append(result)
        if result.returncode != 0 and not plan.tolerate_failure:
            said = (result.stderr or result.stdout).strip()
            raise PlanFailed(f"{' '.join(command)} failed (exit {result.returncode}): {said}")
    return results
