"""The README documents every setting, and only settings that exist."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from service.settings import PREFIX, Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    documented = set(re.findall(r"^\| `(EXPORTD_[A-Z0-9_]+)` \|", README.read_text(), re.M))
    defined = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    assert documented == defined
