"""Data flows one way: a stage imports only the core and earlier stages; nothing imports the CLI.

A stage may be a subpackage (``packing/``): its modules import the core, earlier stages and the
modules before them in the subpackage's own order; every other module imports it as a whole.
"""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "workflow" / "dc2flow"
CORE = {"errors", "config", "camera", "camera_description", "wcs", "io", "photometry", "psf", "atmpsf", "display", "smk"}
STAGES = ["catalog", "opsim", "skycatalog", "partition", "estimate", "packing", "render", "validation", "registry"]  # in data-flow order (opsim, skycatalog: the catalog stage's other inputs)
TOP = {"campaign": set(STAGES), "synthetic": set(), "mosaic": set(), "failures": set(), "status": {"packing", "registry", "campaign"}, "calibrate": {"estimate"}, "viewer": {"registry"},
       "forecast": {"catalog", "partition", "estimate", "packing", "campaign"},
       "sharding": {"campaign"}, "retry": set(), "cli": None}  # None: anything
SUBPACKAGES = {"packing": ["records", "bounds", "heuristics", "milp", "search", "planner", "io"]}  # in build order


def _file_imports(path: Path) -> set[str]:
    """The dc2flow modules a file imports, as dotted paths below ``dc2flow`` (``camera``, ``packing.records``)."""
    parts = path.relative_to(PKG).parts[:-1]  # () for dc2flow/x.py, ("packing",) for dc2flow/packing/x.py
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            if node.level > len(parts) + 1:
                continue
            base = list(parts[:len(parts) + 1 - node.level])
        elif (node.module or "").split(".")[0] == "dc2flow":
            base = []
        else:
            continue
        module = (node.module or "").split(".")
        module = module[1:] if not node.level else module
        module = [m for m in module if m]
        if module:
            found.add(".".join(base + module))
        else:
            found.update(".".join(base + [alias.name]) for alias in node.names)
    return found


def _modules() -> dict[str, list[Path]]:
    """Every module of dc2flow (a subpackage counts as one) and its files."""
    modules = {p.stem: [p] for p in PKG.glob("*.py") if p.stem != "__init__"}
    for init in PKG.glob("*/__init__.py"):
        modules[init.parent.name] = sorted(init.parent.glob("*.py"))
    return modules


def _imports(module: str) -> set[str]:
    """The top-level dc2flow modules ``module`` (a module or a whole subpackage) imports, itself excepted."""
    found = {name.split(".")[0] for path in _modules()[module] for name in _file_imports(path)}
    return {m for m in found if not m.startswith("__")} - {module}


def test_every_module_is_classified():
    assert set(_modules()) == CORE | set(STAGES) | set(TOP)


@pytest.mark.parametrize("package", sorted(SUBPACKAGES))
def test_every_submodule_is_classified(package):
    assert {p.stem for p in (PKG / package).glob("*.py")} - {"__init__"} == set(SUBPACKAGES[package])


@pytest.mark.parametrize("module", sorted(CORE))
def test_core_imports_only_core(module):
    assert _imports(module) <= CORE, _imports(module) - CORE


@pytest.mark.parametrize("index,module", list(enumerate(STAGES)))
def test_stage_imports_core_and_earlier_stages(index, module):
    allowed = CORE | set(STAGES[:index])
    assert _imports(module) <= allowed, _imports(module) - allowed


@pytest.mark.parametrize("package,index,module",
                         [(p, i, m) for p, order in SUBPACKAGES.items() for i, m in enumerate(order)])
def test_submodule_imports_only_earlier_submodules(package, index, module):
    inside = {name for name in _file_imports(PKG / package / f"{module}.py") if name.startswith(package + ".")}
    allowed = {f"{package}.{m}" for m in SUBPACKAGES[package][:index]}
    assert inside <= allowed, inside - allowed


def test_top_level_modules():
    for module, extra in TOP.items():
        if extra is not None:
            assert _imports(module) <= CORE | extra
    assert all("cli" not in _imports(m) for m in _modules() if m != "cli")
