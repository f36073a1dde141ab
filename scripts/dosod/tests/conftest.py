"""pytest set-up for the DOSOD package tests (dev venv with torch): puts scripts/ on sys.path."""

import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2]
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
