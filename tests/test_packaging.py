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


def test_a_non_editable_install_runs_the_workflow(tmp_path):
    """A wheel of this checkout, installed (not editable) into a folder of its own, has its config
    defaults and schema as package data: the CLI makes a catalog, the config loads, and Snakemake
    plans the workflow with that copy of the package, from a directory outside the checkout."""
    import os
    import subprocess
    import sys
    import zipfile

    import shutil

    wheels, site, source = tmp_path / "wheels", tmp_path / "site", tmp_path / "source"
    # build from a copy of the checkout's files (setuptools writes build/ beside the sources)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        if (REPO / name).exists() or (REPO / name).is_symlink():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name, follow_symlinks=False)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(wheels), str(source)], check=True, timeout=600)
    (wheel,) = wheels.glob("dc2flow-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for data in ("dc2flow/data/config.yaml", "dc2flow/data/config.schema.yaml", "dc2flow/data/resource_model.json",
                 "dc2flow/packing/planner.py"):
        assert data in names, f"{data} missing from {wheel.name}"
    assert not any(n.startswith("dc2flow/bundle") for n in names), "a stale module in the wheel"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, timeout=600)
    env = {**os.environ, "PYTHONPATH": str(site), "PATH": f"{site / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*args):
        proc = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    where = run(sys.executable, "-c", "import dc2flow, dc2flow.config as c; c.load(); c.schema(); print(dc2flow.__file__)")
    assert where.strip().startswith(str(site)), where
    run(sys.executable, "-c", "import sys; from dc2flow.cli import main; sys.exit(main(sys.argv[1:]))",
        "make-catalog", "--outdir", "cats", "--visit", "1001", "--ra-deg", "55", "--dec-deg", "-30", "--band", "r",
        "--seed", "1", "--radius-deg", "0.05", "--star-density", "200", "--galaxy-density", "200")
    plan = run(sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--cores", "1", "--config",
               f"catalogs=[{work / 'cats' / 'phosim_cat_1001.txt'}]", "sensors=[R22_S11]", f"outdir={work / 'out'}")
    assert "render_sensor" in plan or "bundle_campaign" in plan, plan[-2000:]
