"""Data flows one way: a stage imports only the core and earlier stages; nothing imports the CLI."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "workflow" / "dc2flow"
CORE = {"errors", "config", "camera", "io", "photometry", "psf", "display", "smk"}
STAGES = ["catalog", "partition", "estimate", "bundle", "render", "validation", "registry"]  # in data-flow order
TOP = {"campaign": set(STAGES), "synthetic": set(), "mosaic": set(), "failures": set(), "status": {"bundle", "registry"}, "calibrate": {"estimate"}, "viewer": {"registry"},
       "forecast": {"catalog", "partition", "estimate", "bundle", "campaign"},
       "sharding": {"campaign"}, "retry": set(), "cli": None}  # None: anything


def _imports(module: str) -> set[str]:
    tree = ast.parse((PKG / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dc2flow"):
            found.add(node.module.split(".")[1] if "." in node.module else node.names[0].name)
    return {m.split(".")[0] for m in found if not m.startswith("__")}


def test_every_module_is_classified():
    modules = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    assert modules == CORE | set(STAGES) | set(TOP)


@pytest.mark.parametrize("module", sorted(CORE))
def test_core_imports_only_core(module):
    assert _imports(module) <= CORE, _imports(module) - CORE


@pytest.mark.parametrize("index,module", list(enumerate(STAGES)))
def test_stage_imports_core_and_earlier_stages(index, module):
    allowed = CORE | set(STAGES[:index])
    assert _imports(module) <= allowed, _imports(module) - allowed


def test_top_level_modules():
    for module, extra in TOP.items():
        if extra is not None:
            assert _imports(module) <= CORE | extra
    assert all("cli" not in _imports(p.stem) for p in PKG.glob("*.py") if p.stem != "cli")
