"""Writing small config files in tests."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write(directory: Path, name: str, text: str) -> str:
    """Write `text` (dedented) as `directory/name`; returns the path, which starts its errors."""
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)
