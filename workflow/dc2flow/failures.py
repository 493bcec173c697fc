"""Failure records: a science error is not retried on unchanged inputs.

Snakemake retries every failed job (``retries`` in the profiles, so that an out-of-memory kill comes
back with more memory) and has no per-error retry policy.  With ``--failure-record FILE`` (the
rules pass one per job), a ``dc2flow`` verb that fails with a
:class:`~dc2flow.errors.Dc2flowError` writes the error and a fingerprint of its command line and
input files to FILE; a retry of the same command on unchanged inputs then stops in well under a
second with exit status :data:`EXIT_NOT_RETRIED` and the recorded message, instead of redoing the
work to fail again.

A job killed from outside (out of memory, ``scancel``, node failure) records nothing and is
retried in full, and so is an error caused by the file system (an ``OSError`` behind the
``Dc2flowError``: a missing or unreadable file may be there on the next try); a changed input (a
fixed catalog, or the included file the error names), ``chmod``, or another dc2flow version
changes the fingerprint and runs again.  A success removes the record.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Sequence

from .errors import Dc2flowError
from .io import file_stamp, inputs_fingerprint, write_json

EXIT_ERROR = 1          # a science error (Dc2flowError)
EXIT_NOT_RETRIED = 3    # the same command already failed with a science error on these inputs


def fingerprint(argv: Sequence[str], record: str, version: str) -> str:
    """The fingerprint of a command (its arguments but the record's path, the dc2flow version, and
    the files its arguments name)."""
    return inputs_fingerprint([f"dc2flow=={version}", *(a for a in argv if a != record)])


def recorded(record: str, fingerprint: str) -> dict | None:
    """The failure recorded in ``record`` for this command and unchanged inputs, if any.

    Besides the command's own arguments, the file the error named (e.g. an ``includeobj`` file
    with a bad line) must be unchanged: fixing it makes the record stale.
    """
    try:
        with open(record) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None                     # none, or unreadable: run, and record again if it fails
    if not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
        return None
    if any(file_stamp(path) != stamp for path, stamp in data.get("files", {}).items()):
        return None
    return data


def not_retried_message(verb: str, record: str, prior: dict) -> str:
    return (f"dc2flow {verb}: error: not retried: this command failed with a science error on these same "
            f"inputs at {prior['utc']} ({record}): {prior['message']} "
            f"[fix the input, or delete the record to force a rerun]")


def caused_by_os_error(exc: BaseException) -> bool:
    """Whether an ``OSError`` is behind ``exc`` (its cause or context chain): not a science error."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def record_failure(record: str, verb: str, exc: Dc2flowError, fingerprint: str) -> None:
    """Write the record of a science error (atomically); an error the file system caused is not
    recorded (the next try may find the file)."""
    if caused_by_os_error(exc):
        return
    named = getattr(exc, "path", None)
    write_json(record, {
        "verb": verb, "error": type(exc).__name__, "message": str(exc), "fingerprint": fingerprint,
        "files": {str(named): file_stamp(named)} if named else {},
        "utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})


def clear(record: str) -> None:
    """After a success: the old failure is history (the inputs changed and it worked)."""
    if os.path.exists(record):
        os.remove(record)
