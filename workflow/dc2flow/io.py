"""File helpers shared by every stage: atomic writes, content hashes and Snakemake benchmark records.

Every output is written to a temporary name in its own directory and renamed into place, so a
killed job never leaves a file that looks complete, and the next write of the same output removes
the temporary a killed job left.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import socket
from pathlib import Path
from typing import Iterator

IMAGE_RE = re.compile(r"^eimage_(\d{8})-(\d+)-([ugrizy])-(R\d\d_S\d\d)-det(\d{3})\.fits$")
"""imSim's eimage file name, ``eimage_{visit:08d}-{snap}-{band}-{det_name}-det{det_num:03d}.fits``:
groups visit, snap, band, det_name, det_num (the registry, validation and status read names by it)."""
_RENDER_BENCHMARK_RE = re.compile(r"(?P<visit>\d{8})(?:-(?P<snap>[1-9]\d*))?[/\\][ugrizy]-(?P<det_name>R\d\d_S\d\d)"
                                  r"-det\d{3}\.tsv$")


def render_benchmark_key(path: str | os.PathLike) -> tuple[int, int, str] | None:
    """(visit, snap, det_name) of a render's benchmark record, ``benchmarks/render/{exposure key}/
    {band}-{det_name}-det{det_num}.tsv`` (key ``00449053`` for snap 0, ``00449053-1`` for snap 1:
    :func:`dc2flow.campaign.exposure_key`); None for another path."""
    m = _RENDER_BENCHMARK_RE.search(os.fspath(path))
    return (int(m["visit"]), int(m["snap"] or 0), m["det_name"]) if m else None



def _host_label() -> str:
    """This host's short name, as it may appear in a file name (``[A-Za-z0-9_]``, at most 64)."""
    name = socket.gethostname().split(".")[0] or "localhost"
    return re.sub(r"[^A-Za-z0-9_]", "_", name)[:64]


_HOST = _host_label()


def _pid_alive(pid: int) -> bool:
    """True if a process with this id runs on this host (possibly another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Remove the temporaries of ``path`` left by killed writers; return the names removed.

    A temporary is ``.{name}.tmp-{host}-{pid}`` (see `atomic_output`).  One is stale when it was
    made on this host by a process that no longer runs (a job killed by SIGKILL, an out-of-memory
    kill or a lost node restarted here never reaches its ``finally``).  Temporaries of live
    processes and of other hosts (whose processes cannot be checked from here) are kept.
    """
    path = Path(path)
    prefix = f".{path.name}.tmp-{_HOST}-"
    removed = []
    try:
        entries = [e.name for e in os.scandir(path.parent) if e.name.startswith(prefix)]
    except FileNotFoundError:
        return removed
    for name in entries:
        pid = name[len(prefix):]
        if pid.isdigit() and pid.isascii() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path.parent / name)
                removed.append(name)
    return removed


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    On any exception the temporary file is removed and ``path`` is left as it was.  The temporary
    is named ``.{name}.tmp-{host}-{pid}``; temporaries of the same output left by a killed process
    of this host are removed first (`remove_stale_temporaries`), so a rerun cleans up after a
    killed job.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{_HOST}-{os.getpid()}")
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


BENCHMARK_FIELDS = {"s": "runtime_s", "max_rss": "max_rss_mb", "cpu_time": "cpu_time_s"}

#: a job's own peak-memory record sits beside its benchmark TSV: ``X.tsv`` -> ``X.peak.json``
PEAK_SUFFIX = ".peak.json"


def peak_record_path(benchmark: str | os.PathLike) -> str:
    """The peak record beside a benchmark TSV (``X.tsv`` -> ``X.peak.json``)."""
    base = str(benchmark)
    return (base[:-4] if base.endswith(".tsv") else base) + PEAK_SUFFIX


def write_peak_record(path: str | os.PathLike) -> None:
    """Write this process's exact peak RSS and CPU time (``getrusage``), atomically.

    Why: Snakemake's ``benchmark:`` samples a job's RSS once a second (then every 30 s), so a peak
    shorter than that (a bright object's FFT lasts a fraction of a second) is missed or caught by
    chance; the kernel's high-water mark (``ru_maxrss``, KiB on Linux) is the peak itself.
    """
    import resource

    use = resource.getrusage(resource.RUSAGE_SELF)
    write_json(path, {"max_rss_mb": use.ru_maxrss / 1024.0, "cpu_time_s": use.ru_utime + use.ru_stime,
                      "pid": os.getpid(), "source": "getrusage(RUSAGE_SELF)"})


def remove_peak_record(path: str | os.PathLike) -> None:
    """An attempt starts: an earlier attempt's peak record no longer describes the output."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def read_benchmark(path: str | os.PathLike | None) -> dict[str, float | None]:
    """runtime_s, max_rss_mb, cpu_time_s from a Snakemake benchmark TSV; all None when there is no file.

    Why the last row: Snakemake appends one row per benchmark repeat, and a job retried
    (``--retries``) may leave an earlier attempt's row above the successful one; the last row is
    the run that made the output.  A value is None where Snakemake wrote ``NA`` (the job ended
    before the first memory sample) or the column is missing.  Where the job left its own peak
    record (:func:`peak_record_path`, written by ``dc2flow --peak-record``), its exact peak RSS
    replaces Snakemake's sampled ``max_rss``.  The registry, calibration and
    :func:`dc2flow.validation.plot_resources` all read benchmarks here.
    """
    out: dict[str, float | None] = {v: None for v in BENCHMARK_FIELDS.values()}
    if not path or not os.path.exists(path):
        return out
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if rows:
        for col, name in BENCHMARK_FIELDS.items():
            try:
                out[name] = float(rows[-1][col])
            except (KeyError, TypeError, ValueError):
                out[name] = None
    peak = peak_record_path(path)
    if out["runtime_s"] is not None and os.path.exists(peak):
        try:
            with open(peak) as fh:
                out["max_rss_mb"] = float(json.load(fh)["max_rss_mb"])
        except (OSError, ValueError, KeyError, TypeError):
            pass   # a damaged peak record: Snakemake's sample stands
    return out
