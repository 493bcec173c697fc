"""Pins: pyproject.toml pins every direct dependency exactly; constraints.txt agrees with it."""

import re
import tomllib

from conftest import REPO


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_direct_pins_match_constraints():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    direct = project["dependencies"] + project["optional-dependencies"]["test"]
    pins = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", d).groups() for d in direct)
    constraints = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                       if line and not line.startswith("#"))
    constraints = {_norm(k): v for k, v in constraints.items()}
    for name, version in pins.items():
        assert constraints.get(_norm(name)) == version, name
