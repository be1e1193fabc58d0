"""``python -m installer build [--onefile] [--dist DIR]``: build the possync executable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from installer.build import ROOT, build


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and build."""
    parser = argparse.ArgumentParser(prog="python -m installer", description="Build the possync executable.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="build dist/possync/possync (one folder) or dist/possync (--onefile)")
    p.add_argument("--onefile", action="store_true", help="one self-extracting file instead of a folder")
    p.add_argument("--dist", default=str(ROOT / "dist"), help="output folder (default: dist/)")
    args = parser.parse_args(argv)
    try:
        result = build(Path(args.dist), onefile=args.onefile)
    except RuntimeError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    print(f"built {result.executable} ({result.size_bytes / 1e6:.0f} MB) in {result.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
