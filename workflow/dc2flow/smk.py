"""The Snakemake internals dc2flow relies on, in one place.

Snakemake's public API does not cover everything the workflow needs; what it uses beyond it sits
here, written for (and tested against, ``tests/test_smk.py``) the Snakemake version pinned in
``pyproject.toml`` (:data:`WRITTEN_FOR`).  An upgrade that moves one of these fails that test
with the name of the internal, instead of failing somewhere in a campaign.

- :func:`signature_once` — ``snakemake.common.overwrite_function_params``: Snakemake inspects the
  signature of every input/params/resources function at every call (~50 us); the workflow's
  per-job functions run several times per render job while a campaign is planned.
- :func:`incomplete_checkpoint` — ``snakemake.exceptions.IncompleteCheckpointException`` and
  ``snakemake.io.checkpoint_target``: before the bundle plan exists, a per-job function says
  "wait for the checkpoint" without asking Snakemake's checkpoint lookup (which costs more).
- :func:`find_profile` — ``snakemake.cli.get_profile_dir``: where Snakemake finds a ``--profile``
  (a folder, or a name under the user's and system's profile folders).
- :func:`incomplete_outputs` — the ``.snakemake/incomplete/`` markers Snakemake keeps for the
  outputs of running jobs (``snakemake/persistence``), read by ``dc2flow status``.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Callable

WRITTEN_FOR = "9.27.1"
"""The Snakemake version this adapter was written for and is tested against."""


def signature_once(func: Callable) -> Callable:
    """``func`` with its signature computed once and handed to Snakemake (planning speed)."""
    from snakemake.common import overwrite_function_params

    overwrite_function_params(func, inspect.signature(func).parameters)
    return func


def incomplete_checkpoint(checkpoint, path: str) -> Exception:
    """The exception by which an input/params/resources function tells Snakemake that ``path``, an
    output of ``checkpoint`` (``checkpoints.NAME``), does not exist yet; raise it."""
    from snakemake.exceptions import IncompleteCheckpointException
    from snakemake.io import checkpoint_target

    return IncompleteCheckpointException(checkpoint.rule, checkpoint_target(path))


def incomplete_checkpoint_type() -> type:
    """The type to catch for :func:`incomplete_checkpoint` (and Snakemake's own checkpoint lookups)."""
    from snakemake.exceptions import IncompleteCheckpointException

    return IncompleteCheckpointException


def find_profile(profile: str) -> tuple[Path, Path] | None:
    """(folder, its config file) of the Snakemake profile ``profile``, as Snakemake finds it; None
    if there is none."""
    from snakemake.cli import get_profile_dir

    return get_profile_dir(profile)


def incomplete_outputs(workdir: str | os.PathLike) -> set[str]:
    """The outputs Snakemake marks as being made, from ``{workdir}/.snakemake/incomplete/``, as real paths.

    Snakemake (9.x, ``snakemake/persistence/file.py``) writes one marker per output of a job it
    starts and removes it when the job fails or finishes.  The marker's name is the output path as
    the Snakefile wrote it (relative to the working directory, or absolute), urlsafe-base64 encoded;
    a name longer than the file system allows is split into folders, every part but the last
    starting with ``@``.  A driver killed mid-job leaves its markers until the next run there.
    """
    from base64 import urlsafe_b64decode

    top = os.path.join(os.fspath(workdir), ".snakemake", "incomplete")
    base = os.path.realpath(workdir)
    out: set[str] = set()
    for dirpath, _, files in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        parts = [] if rel == "." else rel.split(os.sep)
        if not all(p.startswith("@") for p in parts):
            continue
        for name in files:
            if name == "migration_underway":
                continue
            try:
                key = urlsafe_b64decode("".join(p[1:] for p in parts) + name).decode()
            except (ValueError, UnicodeDecodeError):
                continue
            out.add(os.path.realpath(os.path.join(base, key)))
    return out
