"""python/pyproject.toml's extras repeat the pins of python/requirements/*.txt."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

PYTHON = Path(__file__).resolve().parents[1]


def pins(name: str) -> list[str]:
    lines = (PYTHON / "requirements" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize(("extra", "file"), [("setup", "setup.txt"), ("test", "test.txt"), ("dev", "dev.txt"), ("clip-tokenizer", "clip-tokenizer.txt")])
def test_extra_matches_requirements_file(extra: str, file: str) -> None:
    project = tomllib.loads((PYTHON / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"][extra] == pins(file)


def test_everything_is_pinned() -> None:
    for file in ("setup.txt", "test.txt", "setup-nodeps.txt", "dev.txt", "clip-tokenizer.txt", "deploy.txt"):
        for line in pins(file):
            assert "==" in line, f"{file}: {line} is not pinned"
