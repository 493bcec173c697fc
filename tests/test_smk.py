"""The Snakemake internals dc2flow uses (dc2flow.smk), against the installed Snakemake.

Pinned: the adapter was written for one Snakemake version; an upgrade must pass through here (each
test names the internal it checks), and the version pin in pyproject.toml moves with WRITTEN_FOR.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from conftest import REPO
from dc2flow import smk


def test_written_for_the_pinned_snakemake():
    import snakemake

    assert snakemake.__version__ == smk.WRITTEN_FOR, (
        f"Snakemake {snakemake.__version__} is installed, dc2flow.smk was written for {smk.WRITTEN_FOR}: check each "
        "internal it uses (overwrite_function_params, IncompleteCheckpointException, checkpoint_target, "
        "get_profile_dir, .snakemake/incomplete markers), then update WRITTEN_FOR and the pin")
    pinned = (REPO / "pyproject.toml").read_text()
    assert f'"snakemake=={smk.WRITTEN_FOR}"' in pinned


def test_signature_once_is_what_snakemake_reads():
    """snakemake.common.overwrite_function_params / get_function_params."""
    from snakemake.common import get_function_params

    def resources(wildcards, attempt):
        return attempt

    assert smk.signature_once(resources) is resources
    params = get_function_params(resources)
    assert list(params) == ["wildcards", "attempt"]
    assert get_function_params(resources) is params   # computed once, not per call


def test_incomplete_checkpoint_names_the_rule_and_a_flagged_target():
    """snakemake.exceptions.IncompleteCheckpointException(rule, checkpoint_target(path))."""
    from types import SimpleNamespace

    from snakemake.io import is_flagged

    rule = object()
    exc = smk.incomplete_checkpoint(SimpleNamespace(rule=rule), "out/bundles/campaign.csv")
    assert isinstance(exc, smk.incomplete_checkpoint_type())
    assert exc.rule is rule and exc.targetfile == "out/bundles/campaign.csv"
    assert is_flagged(exc.targetfile, "checkpoint_target")


def test_find_profile_finds_a_folder_as_snakemake_does():
    """snakemake.cli.get_profile_dir."""
    folder, config = smk.find_profile(str(REPO / "profiles" / "local"))
    assert os.path.samefile(folder, REPO / "profiles" / "local") and config.name == "config.yaml"
    assert smk.find_profile(str(REPO / "profiles" / "no-such-profile")) is None


@pytest.mark.slow
def test_incomplete_outputs_of_a_running_snakemake(tmp_path):
    """The .snakemake/incomplete markers of a real Snakemake run: its running job's output is listed
    (relative and absolute output paths), and nothing once the run has finished."""
    absolute = tmp_path / "abs" / ("d" * 120) / "b.txt"
    (tmp_path / "Snakefile").write_text(
        "rule all:\n    input: 'out/a.txt', %r\n" % str(absolute)
        + "rule a:\n    output: 'out/a.txt'\n    shell: 'while [ ! -e go ]; do sleep 0.1; done; touch {output}'\n"
        + "rule b:\n    output: %r\n    shell: 'while [ ! -e go ]; do sleep 0.1; done; touch {output}'\n" % str(absolute))
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        want = {os.path.realpath(tmp_path / "out" / "a.txt"), os.path.realpath(absolute)}
        deadline = time.monotonic() + 120
        while smk.incomplete_outputs(tmp_path) != want and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert smk.incomplete_outputs(tmp_path) == want
    finally:
        (tmp_path / "go").touch()
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert smk.incomplete_outputs(tmp_path) == set()
