"""docs/architecture.md names only what exists, and maps every module of src/litseg.

The page is read by people about to change litseg; a module moved or renamed without the page
would send them to the wrong file. Its guide is run by tests/test_extend.py; here the rest of
the page is checked against the tree: every dotted ``litseg.*`` name imports, every
repository path it names exists, and its package map has a row for every module (and no row
for a module that is gone). No file in the repository cites a document that lies outside it.
"""

import importlib
import re
import subprocess

import pytest

from tests.helpers import ROOT

PAGE = ROOT / "docs" / "architecture.md"
TEXT = PAGE.read_text(encoding="utf-8")
PACKAGE = ROOT / "src" / "litseg"
# the files the guide asks a reader to create: named on the page, absent from the tree
GUIDE_FILES = set(re.findall(r"^# file: (\S+)$", TEXT, re.MULTILINE))
# a dotted litseg name in backticks, e.g. `litseg.runtime.resume.checkpoint_file` or `f(cfg)`
DOTTED = re.compile(r"`(litseg(?:\.\w+)+)")
# a repository path in backticks; <...>, *, { and spaces end it (placeholders and patterns)
REPO_PATH = re.compile(r"`((?:src|conf|tests|scripts|docs|notebooks)/[^`<*{\s]*)")
# a row of the package map: | `module.py` or `folder/` | its job |
MAP_ROW = re.compile(r"^\| `([\w/]+(?:\.py|/))` \|", re.MULTILINE)


def resolves(dotted: str) -> bool:
    """Whether ``litseg.a.b.c`` is a module, or an attribute of the longest module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


@pytest.mark.parametrize("dotted", sorted(set(DOTTED.findall(TEXT))))
def test_every_dotted_name_imports(dotted: str) -> None:
    new = {p.removeprefix("src/").removesuffix(".py").replace("/", ".") for p in GUIDE_FILES}
    if any(dotted == n or dotted.startswith(f"{n}.") for n in new):
        return  # a module the guide creates
    assert resolves(dotted), f"docs/architecture.md names {dotted}, which does not import"


def test_every_repository_path_exists() -> None:
    named = {p.rstrip("/.,") for p in REPO_PATH.findall(TEXT)} - GUIDE_FILES
    assert named, "no repository paths found on the page"
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def modules() -> set[str]:
    """The package map's expected rows: each top-level module of src/litseg, each module of
    a sub-package with modules of mixed jobs (utils/, data/), and each other sub-package."""
    rows = {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    for folder in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        if folder.name in ("utils", "data"):
            rows |= {f"{folder.name}/{p.name}" for p in folder.glob("*.py")}
            rows |= {f"{folder.name}/{p.name}/" for p in folder.iterdir() if p.is_dir()}
            rows.discard(f"{folder.name}/__init__.py")
        else:
            rows.add(f"{folder.name}/")
    return {r for r in rows if "__pycache__" not in r}


def test_package_map_has_a_row_per_module() -> None:
    rows = set(MAP_ROW.findall(TEXT))
    expected = modules()
    assert not expected - rows, f"modules missing from the package map: {sorted(expected - rows)}"
    gone = sorted(r for r in rows if not (PACKAGE / r).exists())
    assert not gone, f"the package map lists modules that are gone: {gone}"


def test_no_file_cites_a_document_outside_the_repository() -> None:
    """DESIGN.md and notes beside the repository are not shipped: nothing may point at them
    (data under ../shared/datasets is data, not a document, and stays allowed)."""
    outside = r"DESIGN\.md|references\.md|\.\./shared/\S*\.md|\.\./notes/"
    found = subprocess.run(
        ["git", "grep", "--untracked", "-n", "-I", "-E", outside,
         "--", "src", "scripts", "tests", "docs", "README.md", "notebooks", "conf",
         ":!tests/test_architecture_doc.py"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert found.returncode in (0, 1), found.stderr
    assert found.stdout == "", found.stdout
