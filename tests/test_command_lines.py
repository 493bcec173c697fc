"""No command line grows with the campaign: every shell command of a 100-visit x 189-sensor dry run
under a long output root stays far below Linux's limit on one argument (128 KiB, MAX_ARG_STRLEN).

A rule that put one path per sensor of the campaign on its command line (plot_resources once did:
196,003 bytes for 12 visits) fails with 'Argument list too long' only at the end of a real campaign.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path


from conftest import REPO, env_with_venv

LIMIT = 100_000  # bytes per printed shell command
NODE = ["--node-memory-gb", "512", "--node-cores", "128", "--visit-overhead-gb", "10"]


def _plan_scale():
    spec = importlib.util.spec_from_file_location("plan_scale", REPO / "benchmarks" / "plan_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.DC2FLOW = str(Path(sys.executable).parent / "dc2flow")  # this venv's, whatever PATH says
    return module


def _commands(stdout: str) -> dict[str, list[str]]:
    """rule -> the shell commands `snakemake -n -p` printed for its jobs."""
    out: dict[str, list[str]] = {}
    rule = None
    for line in stdout.splitlines():
        m = re.match(r"(?:localrule|rule|checkpoint|localcheckpoint) (\w+):", line)
        if m:
            rule = m[1]
        elif line.startswith("Shell command: "):
            out.setdefault(rule, []).append(line[len("Shell command: "):])
    return out


def test_no_command_line_grows_with_the_campaign(tmp_path, state="fresh"):
    ps = _plan_scale()
    n = 100
    root = tmp_path / ("campaign-output-root-of-a-long-site-path/" * 4) / "outputs"
    root.mkdir(parents=True)
    catalogs = ps.make_catalogs(tmp_path, n)
    config = tmp_path / "campaign.yaml"
    ps.write_config(config, catalogs, root)
    if state == "planned":
        ps.make_planned(root, n, NODE)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                           "--configfile", str(config), "-n", "-p", "--cores", "2"],
                          capture_output=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env_with_venv(), timeout=900)
    assert proc.returncode == 0, proc.stdout[-5000:]
    commands = _commands(proc.stdout)
    expected = {"parse_catalog", "partition_visit", "estimate_visit", "render_sensor", "validate_visit",
                "mosaic_visit", "register_visit", "plot_resources"}
    expected |= {"finish_bundle"} if state == "planned" else {"bundle_campaign"}
    assert expected <= set(commands), sorted(commands)
    assert len(commands["render_sensor"]) == n * 189
    longest = {rule: max(len(c.encode()) for c in cmds) for rule, cmds in commands.items()}
    assert max(longest.values()) < LIMIT, longest
