"""File helpers shared by every stage: atomic writes and content hashes.

Every output is written to a temporary name in its own directory and renamed into place, so a
killed job never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield str(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def write_json(path: str | os.PathLike, data) -> None:
    """Write JSON atomically (sorted keys, indented)."""
    with atomic_output(path) as tmp, open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.write("\n")


def sha256_file(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from the given parts (stable across runs, machines and Python versions)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1



def file_stamp(path: str | os.PathLike) -> str:
    """``size:mtime_ns:ctime_ns`` of a file or directory, or "" if it does not exist (cheap change
    detection: a rewrite changes the mtime, a ``chmod`` or ``touch`` the ctime)."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def inputs_fingerprint(argv: list[str]) -> str:
    """A digest of a command line and of the files and directories it names that exist now.

    A science error (a :class:`~dc2flow.errors.Dc2flowError`) is deterministic: the same command on
    the same inputs fails the same way.  This fingerprint (arguments, and each named path's size and
    modification and change times) tells a retry whether anything it reads has changed since a recorded
    failure, without reading the files.  Outputs do not exist when a job starts (Snakemake removes
    them), and a directory's mtime changes when a file is renamed into it.
    """
    digest = hashlib.sha256()
    for arg in argv:
        digest.update(arg.encode() + b"\0")
        path = arg.split("=", 1)[-1]
        if path and not path.startswith("-"):
            digest.update(file_stamp(path).encode() + b"\0")
    return digest.hexdigest()
