"""dosod's Python tooling: bundle and text-encoder builders, fixtures, references and checks."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

# The repository checkout (the package is installed editable from python/).
REPO_ROOT = Path(__file__).resolve().parents[2]


def invocation(module: str, args: str | Sequence[str] | None = None) -> str:
    """`python -m MODULE ARGS`, the command that made a file (for provenance); `args` is a
    shell-quoted string or a list (default: this process's arguments)."""
    if args is None:
        args = sys.argv[1:]
    if not isinstance(args, str):
        args = shlex.join(args)
    return f"python -m {module} {args}".rstrip()
