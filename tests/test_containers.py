"""Container recipes: containers/dc2flow.def (Apptainer) and containers/Dockerfile (Docker).

No container engine runs on the development or CI machines, so the images are never built here.
These tests read the recipes with spython's parsers (Singularity Python's recipe converters):
both parse, pin their base image, write no package version of their own (pyproject.toml and
constraints.txt are the one source of truth), copy files that exist, and stay in step with each
other and with pyproject.toml. Then they lay out the copied files as the image would have them
and check that this tree alone is enough: the package finds its config and schema, the CLI and
a Snakemake dry run work from it, and pip can prepare the package from it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from conftest import REPO

pytest.importorskip("spython", reason="spython, the recipe parser, is not installed (a test dependency: "
                               "pip install -c constraints.txt -e '.[test]')")
from spython.main.parse.parsers import DockerParser, SingularityParser  # noqa: E402

DEF = REPO / "containers" / "dc2flow.def"
DOCKERFILE = REPO / "containers" / "Dockerfile"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PROJECT["project"]["version"]
INSTALL_DIR = "/opt/dc2flow"
# Python from a full tag: major.minor.patch, a Debian release, optionally pinned by digest.
BASE_IMAGE = re.compile(r"python:(?P<python>\d+\.\d+\.\d+)-slim-[a-z]+(@sha256:[0-9a-f]{64})?")
# What apptainer accepts as sections (pkg/build/types/parser/deffile.go: validSections).
APPTAINER_SECTIONS = {"help", "setup", "files", "labels", "environment", "pre", "post", "runscript", "test",
                      "startscript", "arguments"}
VERSION_LIKE = re.compile(r"\d+\.\d+")
PIN_OPERATOR = re.compile(r"[=<>~!]=")


@pytest.fixture(scope="module")
def apptainer():
    recipes = SingularityParser(str(DEF)).recipe
    assert len(recipes) == 1, f"{DEF.name}: one stage expected, found {list(recipes)}"
    return next(iter(recipes.values()))


@pytest.fixture(scope="module")
def docker():
    recipes = DockerParser(str(DOCKERFILE)).recipe
    assert len(recipes) == 1, f"{DOCKERFILE.name}: one stage expected, found {list(recipes)}"
    return next(iter(recipes.values()))


# --- small readers ----------------------------------------------------------------------------


def def_sections() -> dict[str, list[str]]:
    """The .def's sections as apptainer splits them (a line whose first word starts with %)."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in DEF.read_text().splitlines():
        words = line.split()
        if words and words[0].startswith("%"):
            current = words[0][1:].lower()
            sections[current] = []
        elif current is not None and line.strip():
            sections[current].append(line.strip())
    return sections


def def_header() -> dict[str, str]:
    header = {}
    for line in DEF.read_text().splitlines():
        if line.lstrip().startswith("%"):
            break
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split(":", 1)
            header[key.strip().lower()] = value.strip()
    return header


def commands(lines: list[str]) -> list[str]:
    """Shell commands from recipe lines: comments dropped, `\\` continuations joined and `&&`
    chains split (the Dockerfile chains its steps, the .def writes one per line)."""
    found, pending = [], ""
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        found += [re.sub(r"\s+", " ", c).strip() for c in pending.split("&&") if c.strip()]
        pending = ""
    assert not pending, f"a continuation line ends the recipe: {pending}"
    return found


def docker_run_steps(docker) -> list[list[str]]:
    """Each Dockerfile RUN instruction's commands (spython puts RUN and ENV lines in `install`)."""
    steps, current = [], None
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("RUN "):
            current = [line[len("RUN "):]]
            steps.append(current)
        elif current is not None and line.startswith(" "):
            current.append(line)
        else:
            current = None
    parsed = commands(docker.install)
    for step in steps:  # the same commands spython found, so both readings agree
        assert all(c in parsed for c in commands(step))
    return [commands(step) for step in steps]


def apptainer_labels(apptainer) -> dict[str, str]:
    pairs = (line.split(None, 1) for line in apptainer.labels if not line.startswith("#"))
    return {p[0]: p[1] if len(p) > 1 else "" for p in pairs}


def docker_labels(docker) -> dict[str, str]:
    labels = {}
    for (label,) in docker.labels:
        key, value = label.split("=", 1)
        labels[key] = value.strip('"')
    return labels


def environment(entries: list[str]) -> dict[str, str]:
    """KEY=VALUE entries, with the .def's `"${KEY:-default}"` read as its default."""
    env = {}
    for entry in entries:
        key, value = entry.split("=", 1)
        value = value.strip('"')
        default = re.fullmatch(r"\$\{(\w+):-(.*)\}", value)
        if default:
            assert default.group(1) == key, entry
            value = default.group(2)
        env[key] = value
    return env


def copies(recipe) -> list[tuple[str, str]]:
    """(source in the repository, destination in the image) pairs, in order."""
    pairs = []
    for entry in recipe.files:
        src, dst = entry.split() if isinstance(entry, str) else entry
        pairs.append((src, dst))
    return pairs


def install_commands(recipe) -> list[str]:
    return [c for c in commands(recipe.install) if re.search(r"\bpip install\b", c)]


# --- the recipes ------------------------------------------------------------------------------


def test_definition_file_parses_with_the_expected_sections(apptainer):
    assert def_header().get("bootstrap") == "docker"
    sections = def_sections()
    assert set(sections) <= APPTAINER_SECTIONS, f"apptainer rejects sections {set(sections) - APPTAINER_SECTIONS}"
    assert {"files", "post", "environment", "runscript", "test", "labels"} <= set(sections)
    assert apptainer.fromHeader and apptainer.files and apptainer.install and apptainer.environ
    assert apptainer.labels and apptainer.test
    assert apptainer.cmd == 'exec dc2flow "$@"'
    assert "cd " + INSTALL_DIR in commands(apptainer.install)


def test_dockerfile_parses(docker):
    assert docker.fromHeader and docker.files and docker.install and docker.environ and docker.labels
    assert docker.workdir == INSTALL_DIR
    assert docker.entrypoint == ["dc2flow"]  # `docker run IMAGE <verb>` as `apptainer run dc2flow.sif <verb>`


def test_base_image_is_a_full_tag_and_the_same_in_both(apptainer, docker):
    for name, ref in ((DEF.name, def_header()["from"]), (DOCKERFILE.name, docker.fromHeader)):
        assert BASE_IMAGE.fullmatch(ref), f"{name}: base image {ref!r} is not pinned to a full python tag"
    assert def_header()["from"] == docker.fromHeader == apptainer.fromHeader
    python = BASE_IMAGE.fullmatch(docker.fromHeader).group("python")
    from packaging.specifiers import SpecifierSet

    assert python in SpecifierSet(PROJECT["project"]["requires-python"])


@pytest.mark.parametrize("path", [DEF, DOCKERFILE], ids=lambda p: p.name)
def test_recipes_write_no_versions(path, apptainer, docker):
    """Versions live in pyproject.toml and constraints.txt only. The base image tag and the
    image's version label are the two allowed exceptions (the label is checked against
    pyproject.toml below)."""
    base = docker.fromHeader
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if base in line.lower() and re.match(r"\s*from\b", line, re.IGNORECASE):
            continue
        if re.match(r"\s*(LABEL\s+)?org\.opencontainers\.image\.version[\s=]", line):
            continue
        assert not VERSION_LIKE.search(line), f"{path.name}:{number}: a version number: {line.strip()}"
        assert not PIN_OPERATOR.search(line), f"{path.name}:{number}: a version pin: {line.strip()}"


def test_one_install_command_from_pyproject_with_the_constraints(apptainer, docker):
    cmd = install_commands(apptainer)
    assert cmd == install_commands(docker), "the .def and the Dockerfile install differently"
    assert len(cmd) == 1, f"exactly one pip install expected, found {cmd}"
    args = shlex.split(cmd[0])
    assert args[:2] == ["pip", "install"]
    assert args[args.index("-c") + 1] == "constraints.txt"
    assert "--no-cache-dir" in args
    # The project itself, in the directory the recipes cd to (editable: see dc2flow.def's comment
    # on dc2flow.config), and nothing else: no second package, no requirement of its own.
    assert [a for a in args[2:] if not a.startswith("-") and a != "constraints.txt"] == ["."]
    assert args[args.index(".") - 1] == "-e"
    for recipe in (apptainer, docker):
        dests = {dst for _, dst in copies(recipe)}
        assert {f"{INSTALL_DIR}/pyproject.toml", f"{INSTALL_DIR}/constraints.txt"} <= dests
        assert "pip check" in commands(recipe.install)


def test_copied_files_exist_and_are_the_same_in_both(apptainer, docker):
    pairs = copies(apptainer)
    assert pairs == copies(docker)
    for src, dst in pairs:
        assert (REPO / src).exists(), f"the recipes copy {src}, which is not in the repository"
        assert dst == f"{INSTALL_DIR}/{src}", f"{src} should keep its place in the tree ({INSTALL_DIR})"
    sources = {src for src, _ in pairs}
    package_root = PROJECT["tool"]["setuptools"]["package-dir"][""]
    needed = {"pyproject.toml", "constraints.txt", PROJECT["project"]["readme"], package_root, "config", "Snakefile"}
    assert needed <= sources, f"not copied: {needed - sources}"


def test_labels_match_pyproject_and_each_other(apptainer, docker):
    labels = apptainer_labels(apptainer)
    assert labels == docker_labels(docker)
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.title"] == PROJECT["project"]["name"]
    assert labels["org.opencontainers.image.licenses"] == PROJECT["project"]["license"]
    assert labels["org.opencontainers.image.source"].startswith("https://")


def test_environment_and_checks_are_the_same_in_both(apptainer, docker):
    env = environment(apptainer.environ)
    assert env == environment(docker.environ)
    assert env["OMP_NUM_THREADS"] == "1" and env["PYTHONNOUSERSITE"] == "1" and env["LC_ALL"] == "C.UTF-8"
    tests = [line for line in def_sections()["test"] if not line.startswith("#") and line != "set -eu"]
    checks = [step for step in docker_run_steps(docker) if "dc2flow --help > /dev/null" in step]
    assert checks == [tests], "the Dockerfile's check step differs from the .def's test section"
    assert any("import galsim, pulp" in t and "dc2flow" in t for t in tests)


# --- the tree the image holds -----------------------------------------------------------------


@pytest.fixture(scope="module")
def image_tree(apptainer, tmp_path_factory) -> Path:
    """The recipes' copies laid out under a temporary root, cleaned as the install step cleans."""
    root = tmp_path_factory.mktemp("image")
    leftovers = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for src, dst in copies(apptainer):
        target = root / dst.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / src).is_dir():
            shutil.copytree(REPO / src, target, ignore=leftovers)
        else:
            shutil.copy2(REPO / src, target)
    return root / INSTALL_DIR.lstrip("/")


def image_env(tree: Path) -> dict[str, str]:
    # The editable install's .pth puts <install dir>/workflow on sys.path; PYTHONPATH does the
    # same here, ahead of the development checkout's own install. Dependencies: this venv's (the
    # same pins).
    package_root = PROJECT["tool"]["setuptools"]["package-dir"][""]
    return {**os.environ, "PYTHONPATH": str(tree / package_root), "PYTHONNOUSERSITE": "1",
            "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}


def test_image_tree_finds_config_and_schema(image_tree, tmp_path):
    code = ("import dc2flow, dc2flow.config as c, sys; c.load();"
            "print(dc2flow.__file__); print(c.DEFAULT_CONFIG); print(c.SCHEMA)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=image_env(image_tree),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for path in proc.stdout.split():
        assert Path(path).is_relative_to(image_tree), f"{path} is not in the image's tree"
    cli = subprocess.run([sys.executable, "-m", "dc2flow.cli", "--help"], cwd=tmp_path, env=image_env(image_tree),
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and "usage: dc2flow" in cli.stdout, cli.stderr[-3000:]


def test_image_tree_runs_the_workflow_dry(image_tree, tiny_catalog, tmp_path):
    """The Snakefile, rules, schema and defaults copied into the image are the whole workflow."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(image_tree / "Snakefile"), "-d", str(tmp_path / "work"),
           "-n", "--cores", "1", "--config", f"catalogs=[{tiny_catalog}]", "sensors=[R22_S11]", "outdir=out"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=image_env(image_tree), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"render_sensor\s+1\b", proc.stdout), proc.stdout[-3000:]


def _setuptools_version() -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in re.findall(r"\d+", metadata.version("setuptools"))[:2])
    except metadata.PackageNotFoundError:
        return (0,)


@pytest.mark.skipif(_setuptools_version() < (77,),
                    reason="needs setuptools>=77 in this environment (pyproject's SPDX `license` string), "
                           "to build the metadata offline, without build isolation")
def test_install_command_prepares_the_package_from_the_image_tree(apptainer, image_tree, tmp_path):
    """The recipes' pip command, run as a dry run with no index (no network) and no dependencies:
    the copied files are enough to build dc2flow's metadata, of the labelled version."""
    args = shlex.split(install_commands(apptainer)[0])[2:]
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index", "--no-build-isolation",
           "--quiet", "--report", str(report), *args]
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    proc = subprocess.run(cmd, cwd=image_tree, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    installs = [(i["metadata"]["name"], i["metadata"]["version"]) for i in json.loads(report.read_text())["install"]]
    assert installs == [(PROJECT["project"]["name"], VERSION)]
    assert not list(image_tree.rglob("*.egg-info")), "a dry run should leave the tree as it was"
