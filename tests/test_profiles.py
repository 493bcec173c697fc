"""Site profiles: well-formed, consistent with their node shapes, and inspectable without a cluster."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

PROFILES = ["local", "slurm", "perlmutter", "ci-slurm"]
SLURM = ["slurm", "perlmutter", "ci-slurm"]


@pytest.mark.parametrize("name", PROFILES)
def test_profile_parses(name):
    profile = yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())
    assert profile.get("executor", "local") == ("slurm" if name in SLURM else "local")
    assert name in (REPO / "profiles" / "README.md").read_text()


@pytest.mark.parametrize("name", SLURM)
def test_cores_match_the_node_shape(name):
    profile = yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())
    assert profile["configfiles"] == [f"profiles/{name}/node.yaml"]
    node = yaml.safe_load((REPO / "profiles" / name / "node.yaml").read_text())["bundle"]
    assert profile["cores"] == node["node_cores"]     # a group job's CPUs are capped by `cores`
    from dc2flow.config import load

    load(overrides={"bundle": node})                 # the node file is valid config


@pytest.mark.parametrize("name", ["slurm", "perlmutter"])
def test_dry_run_without_a_cluster(name, tiny_catalog, tmp_path):
    env = {**os.environ, "SLURM_ACCOUNT": "m0000", "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                           "--profile", f"profiles/{name}", "-n", "--config", f"catalogs=[{tiny_catalog}]", "outdir=out"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.M))["render_sensor"] == "189"
    assert "slurm_account=m0000" in out
    node = yaml.safe_load((REPO / "profiles" / name / "node.yaml").read_text())["bundle"]
    assert f"--node-cores {node['node_cores']}" in out and f"--node-memory-gb {node['node_memory_gb']}" in out
    assert re.search(r"rule render_sensor:(?:\n    .*)*\n    resources: .*mem_mb=2048", out)   # fallback request
