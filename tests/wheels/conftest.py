"""tests/wheels share the Datasette server helper of tests/python and the wheel builder's list
of libraries."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "python"), str(ROOT / "python")]
