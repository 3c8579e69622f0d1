"""The layout of exporters/: families stand on the ground floor and never import each other.

Read from the source (every import statement, those inside functions too), not from what happens
to be loaded, so a lazy sideways import is caught as well as a top-level one.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "exporters"

#: One module per conversion family: what the registry's rows run.
FAMILIES = frozenset(
    {"images", "pdf", "contact", "archive", "text", "markdown", "html", "tables", "pdfdocs", "office"}
)
#: Above the families: the table of conversions, which names them (and only it).
TOP = frozenset({"registry"})
#: Everything else is the ground floor every family may stand on.
GROUND = frozenset(
    {
        "base", "media", "sniff", "options", "naming", "pages", "fonts", "typefaces", "canvas", "pdfium",
        "pictures", "pdfpages", "geometry", "metadata", "resample", "jpeg", "charsets", "templates",
        "typeset", "pdfactive", "estimate",
        "cancel",  # cooperative cancellation (checkpoint), from the cancellation work
    }
)  # fmt: skip
#: Libraries that only a converting process may load.
HEAVY = ("PIL", "reportlab", "pypdfium2", "pikepdf", "weasyprint", "pillow_heif", "markdown_it", "jinja2",
         "xlsxwriter", "charset_normalizer")  # fmt: skip


def _modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def exporters_imports(module: str) -> set[str]:
    """The modules of this package that `module` imports anywhere in its source."""
    return imports_in((PACKAGE / f"{module}.py").read_text(encoding="utf-8")) - {module}


def imports_in(source: str) -> set[str]:
    """The modules of this package imported anywhere in `source`."""
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "exporters":  # from exporters import images, fonts
                names = [f"exporters.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        else:
            continue
        found |= {name.split(".")[1] for name in names if name.startswith("exporters.")}
    return found


def test_every_module_has_a_floor() -> None:
    """A new module is placed on purpose: a family, or the ground floor."""
    unplaced = set(_modules()) - FAMILIES - TOP - GROUND
    assert unplaced == set(), f"put {sorted(unplaced)} in FAMILIES or GROUND of this test"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_family_imports_no_other_family(family: str) -> None:
    sideways = exporters_imports(family) & (FAMILIES | TOP)
    assert sideways == set(), f"exporters.{family} imports the families {sorted(sideways)}"


@pytest.mark.parametrize("module", sorted(GROUND & set(_modules())))
def test_the_ground_floor_imports_no_family(module: str) -> None:
    upwards = exporters_imports(module) & (FAMILIES | TOP)
    assert upwards == set(), f"exporters.{module} (ground floor) imports {sorted(upwards)}"


def test_the_checker_sees_lazy_and_package_level_imports() -> None:
    """What the family tests rely on: imports inside functions, and every spelling of one."""
    source = (
        "import exporters.canvas\n"
        "from exporters.pdfium import PDFIUM_LOCK\n"
        "def f():\n"
        "    from exporters import images, naming\n"
        "    import exporters.pdf as p\n"
    )
    assert imports_in(source) == {"canvas", "pdfium", "images", "naming", "pdf"}


def test_media_imports_nothing_of_this_package_and_sniff_only_media() -> None:
    assert exporters_imports("media") == set()
    assert exporters_imports("sniff") == {"media"}


def _third_party_after(code: str) -> list[str]:
    probe = (
        f"{code}\nimport json, sys\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return [m for m in json.loads(out.stdout.splitlines()[-1]) if not m.startswith("_")]


@pytest.mark.parametrize("module", ["media", "sniff"])
def test_media_and_sniff_load_only_the_standard_library(module: str) -> None:
    assert _third_party_after(f"import exporters.{module}") == ["exporters"]


@pytest.mark.parametrize(
    "module", ["registry", "options", "media", "sniff", "naming", "pages", "fonts", "pdfium"]
)
def test_what_the_api_reads_loads_no_conversion_library(module: str) -> None:
    loaded = _third_party_after(f"import exporters.{module}")
    assert [m for m in loaded if m in HEAVY] == []
