"""On the test Slurm cluster, jobs run inside the configured image (--software-deployment-method apptainer).

No Apptainer or Singularity exists on these machines (not in Debian 12, PyPI or npm). This test
puts a RECORDING STAND-IN named `apptainer` first on PATH: it answers `--version`, fakes `pull`
(creates the image file) and, for `exec`, records the full command line and runs the command on
the host. The Slurm jobs inherit PATH (sbatch --export=ALL), so inside every Slurm job the stand-in
records what Snakemake asks Apptainer to do (image, --cleanenv, binds, exec) and the image
reference must reach the FITS headers. It does not run a real container.

Serial: it uses the one-node cluster (a module-scoped fixture) and must not share it with an xdist
worker that might stop it.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits

from conftest import BIN, PROFILE, REPO, SUBMITTED

pytestmark = [pytest.mark.slow, pytest.mark.serial]

IMAGE = "docker://ghcr.io/dc2flow/dc2flow@sha256:" + "ab" * 32
STAND_IN = r"""#!/usr/bin/env bash
# STAND-IN for apptainer, for tests only: records every call, runs exec'd commands on the host.
{ printf '%q ' "$@"; echo; } >> "$DC2FLOW_APPTAINER_LOG"
case "$1" in
  --version) echo "apptainer version 1.3.4" ;;
  pull) : > "$3" ;;                                   # pull --name NAME URL (in the image dir)
  *) while [ $# -gt 0 ] && [[ "$1" != *.simg ]]; do shift; done   # skip to the image
     shift; exec "$@" ;;                              # bash -c 'command'
esac
"""


def test_slurm_jobs_exec_in_the_configured_image(slurm_cluster, tiny_catalog, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "apptainer").write_text(STAND_IN)
    (bindir / "apptainer").chmod(0o755)
    log = tmp_path / "apptainer.log"
    (tmp_path / "image.yaml").write_text(f"render: {{container_image: '{IMAGE}'}}\n")
    env = {**os.environ, "DC2FLOW_APPTAINER_LOG": str(log),
           "PATH": os.pathsep.join([str(bindir), BIN, os.environ["PATH"]])}
    work = tmp_path / "wf"
    # the profile's node.yaml first, then the image (a CLI --configfile replaces the profile's list)
    cmd = ["timeout", "-k", "10", "600", sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
           "-d", str(work), "--profile", str(PROFILE.relative_to(REPO)),
           "--software-deployment-method", "apptainer", "--apptainer-args", f"--cleanenv --bind {tmp_path}",
           "--configfile", str(PROFILE / "node.yaml"), str(tmp_path / "image.yaml"),
           "--config", f"catalogs=[{tiny_catalog}]", "sensors=[R22_S11]", "outdir=out"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=660)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    submitted = SUBMITTED.findall(proc.stdout + proc.stderr)
    assert len(submitted) >= 4                                  # parse, partition, estimate, the bundle
    for _, _, slurm_log in submitted:                           # ... each ran Snakemake inside a Slurm job
        assert "--executor slurm-jobstep" in Path(slurm_log).read_text()

    calls = [shlex.split(line) for line in log.read_text().splitlines()]
    pulls = [c for c in calls if c[0] == "pull"]
    assert len(pulls) == 1 and pulls[0][-1] == IMAGE            # pulled once, by its digest
    image_file = pulls[0][2]
    execs = [c for c in calls if "exec" in c]
    rules = ("parse", "partition", "estimate", "bundle", "manifest", "render")
    for verb in rules:                                          # every stage ran inside the image
        assert any(re.search(rf"\bdc2flow (-v )?(--[a-z-]+ \S+ )*{verb}\b", c[-1]) for c in execs), verb
    for c in execs:
        assert c[c.index("exec") + 1] == "--home" and "--cleanenv" in c
        assert c[c.index("--bind") + 1] == str(tmp_path)
        image_at = next(i for i, a in enumerate(c) if a.endswith(".simg"))
        assert Path(c[image_at]).name == image_file and c[image_at + 1:image_at + 3] == ["bash", "-c"]
    image = work / "out" / "00001001" / "eimage_00001001-0-r-R22_S11-det094.fits"
    assert fits.getval(image, "CONTAINR") == IMAGE
