"""The campaign registry: one database row per (visit, snap, det_name) image, and the problems eyeballs report.

Why a database: a campaign of thousands of visits × 189 sensors needs answers such as "which
sensors failed validation", "which images were made with config hash X" or "how many core-hours
did band r cost" without opening a million FITS headers.  The registry holds, per image, its path
(relative to the output root), size, checksums, provenance (from the FITS header), runtime and
peak memory (from the render job's Snakemake benchmark record), its bundle, the validation
figures and status, and when it was recorded.

Concurrency (why records, then one merge):

- Render jobs run on many compute nodes at once.  SQLite locks with POSIX file locks, which
  network and parallel file systems (NFS, Lustre, GPFS) implement badly or not at all: many
  writers on many nodes is the documented way to corrupt an SQLite file.
- So no compute job touches the database.  Each render job (in its bundle's Slurm job, on the
  compute node) writes one small JSON record per sensor right after the image, atomically
  (temporary name + rename): no extra job per sensor.
- ``register_visit`` adds what the render could not know yet: the render's run time and memory
  (its Snakemake benchmark record, written after the job) and the visit's validation records.
- ``register_visit`` runs only on the host that drives Snakemake (a ``localrules:`` entry) and
  merges one exposure's records in **one transaction** with upserts keyed on (visit, snap, det_name).
  One writer host + transactions + SQLite's WAL journal and a busy timeout is safe; readers
  (``dc2flow status``, the viewer) never block it for long.  Re-registering replaces rows, so a
  rerun adds no duplicates.
- A ``postgresql://`` URL goes through the same SQLAlchemy Core code; PostgreSQL would also take
  direct writes from many nodes, but the record files keep one design for both.

Snaps: a row is one image, and a visit's snaps are images of their own (``eimage_{visit:08d}-{snap}-...``),
so the key is (visit, snap, det_name).  A database made before the ``snap`` column (key (visit,
det_name), every row then one run's snap) is migrated when :func:`connect` opens it: in one
transaction, under a write lock, ``images`` is rebuilt with ``snap`` in its key, each row's snap
read from its image name (``path``), and ``problems`` gets a ``snap`` column (0).  SQLite and
PostgreSQL alike; other backends get a :class:`~dc2flow.errors.RegistryError` naming the database.

Checksums: ``datasum`` and ``checksum`` are the FITS ``DATASUM``/``CHECKSUM`` cards the render
writes (verifiable with ``fitscheck``), and ``sha256`` is the sha256 of the whole file's bytes
(what ``sha256sum`` prints), computed when the record is written (by the render job).
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import RegistryError
from .io import IMAGE_RE, read_benchmark, sha256_file, write_json

RECORD_VERSION = 1
DET_NAME_RE = re.compile(r"^R\d\d_S\d\d$")
VALIDATION_FIELDS = ("status", "flags", "n_truth", "n_detected", "n_matched", "astrometry_median_px",
                     "astrometry_median_arcsec", "photometry_slope", "photometry_median_dmag", "psf_fwhm_arcsec",
                     "psf_fwhm_model_arcsec", "sky_e_per_px", "sky_model_e_per_px")
HEADER_FIELDS = {"DC2FLOW": "dc2flow_version", "GALSIM": "galsim_version", "CFGHASH": "config_hash",
                 "SEED": "seed", "CATSEED": "catalog_seed", "CONTAINR": "container_image"}


def default_url(outdir: str | os.PathLike) -> str:
    """``sqlite:///{outdir}/registry.sqlite`` (the URL used when ``registry.url`` is null)."""
    return f"sqlite:///{os.fspath(outdir).rstrip('/')}/registry.sqlite"


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the tables (SQLAlchemy Core) -------------------------------------------------------------------
# Built on first use: a render job writes its record without importing SQLAlchemy (~0.2 s per job).
IMAGE_COLUMNS = ("visit", "snap", "det_name", "det_num", "band", "path", "bytes", "datasum", "checksum", "sha256",
                 "dc2flow_version", "galsim_version", "config_hash", "catalog_sha256", "seed", "catalog_seed",
                 "container_image", "runtime_s", "max_rss_mb", "cpu_time_s", "bundle", "validation_status",
                 "validation_flags", *VALIDATION_FIELDS[2:], "recorded_utc")


@functools.lru_cache(maxsize=1)
def _tables():
    """(metadata, images, problems); the images table's columns are :data:`IMAGE_COLUMNS`."""
    from sqlalchemy import BigInteger, Column, Float, Integer, MetaData, String, Table, Text

    md = MetaData()
    images = Table(
        "images", md,
        Column("visit", Integer, primary_key=True),
        Column("snap", Integer, primary_key=True, autoincrement=False),
        Column("det_name", String(7), primary_key=True),
        Column("det_num", Integer, nullable=False),
        Column("band", String(1), nullable=False),
        Column("path", Text, nullable=False),           # relative to the output root
        Column("bytes", BigInteger, nullable=False),
        Column("datasum", String(16)),                   # FITS DATASUM card
        Column("checksum", String(16)),                  # FITS CHECKSUM card
        Column("sha256", String(64), nullable=False),    # sha256 of the file's bytes
        Column("dc2flow_version", String(32)),
        Column("galsim_version", String(32)),
        Column("config_hash", String(32)),
        Column("catalog_sha256", Text),                  # CATSHA0, CATSHA1, ... joined by ','
        Column("seed", BigInteger),
        Column("catalog_seed", BigInteger),
        Column("container_image", Text),
        Column("runtime_s", Float),                      # benchmark record (NULL when absent)
        Column("max_rss_mb", Float),
        Column("cpu_time_s", Float),
        Column("bundle", String(64)),
        Column("validation_status", String(16)),         # ok | flagged | NULL (not validated)
        Column("validation_flags", Text),                # JSON list
        *[Column(name, Float) for name in VALIDATION_FIELDS[2:]],
        Column("recorded_utc", String(20), nullable=False),
    )
    problems = Table(
        "problems", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("visit", Integer, nullable=False),
        Column("snap", Integer, nullable=False, server_default="0"),
        Column("det_name", String(7), nullable=False),
        Column("category", String(32), nullable=False),
        Column("comment", Text, nullable=False),
        Column("created_utc", String(20), nullable=False),
    )
    return md, images, problems


def __getattr__(name: str):
    """``registry.METADATA``, ``registry.IMAGES``, ``registry.PROBLEMS``: the tables, built on first use."""
    if name in ("METADATA", "IMAGES", "PROBLEMS"):
        return dict(zip(("METADATA", "IMAGES", "PROBLEMS"), _tables()))[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def connect(url: str):
    """An SQLAlchemy engine on ``url`` with the tables created (SQLite: WAL journal, 30 s busy timeout).

    Raises:
        RegistryError: the URL is not a database URL SQLAlchemy can open.
    """
    from sqlalchemy import create_engine, event
    from sqlalchemy.exc import ArgumentError, OperationalError

    try:
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 30})

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("PRAGMA journal_mode=WAL")
                cur.close()
        else:
            engine = create_engine(url)
        _create_tables(engine)
        _migrate(engine, url)
    except (ArgumentError, OperationalError, ImportError) as exc:
        raise RegistryError(url, f"cannot open the registry database: {str(exc).splitlines()[0]}", None,
                            "give an SQLAlchemy URL such as sqlite:///results/registry.sqlite or "
                            "postgresql://user@host/db") from None
    return engine


def _create_tables(engine) -> None:
    """CREATE TABLE IF NOT EXISTS, so merges that start at once on a new database do not race."""
    from sqlalchemy.schema import CreateTable

    with engine.begin() as conn:
        for table in _tables()[0].sorted_tables:
            conn.execute(CreateTable(table, if_not_exists=True))


def _table_columns(conn, table: str) -> set[str]:
    from sqlalchemy import inspect

    return {c["name"] for c in inspect(conn).get_columns(table)}


def _migrate(engine, url: str) -> None:
    """Give a registry made before snaps (``images`` keyed (visit, det_name)) the ``snap`` column.

    One look at the columns when the database is current (every connect); else, under a write
    lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL ``LOCK TABLE``) and in one transaction, so that
    merges starting at once migrate it once and a failure leaves it as it was: ``images`` is
    copied into a table of the current schema, each row's snap read from its image name
    (``path``; 0 when the name has none), the old table dropped and the copy renamed; ``problems``
    gets ``snap`` 0.

    Raises:
        RegistryError: the database lacks the column and is neither SQLite nor PostgreSQL.
    """
    with engine.connect() as conn:
        current = "snap" in _table_columns(conn, "images") and "snap" in _table_columns(conn, "problems")
    if current:
        return
    if engine.dialect.name not in ("sqlite", "postgresql"):
        raise RegistryError(url, "the registry was made before snaps: its images table has no 'snap' column", None,
                            "migrate it by hand (add snap INTEGER NOT NULL DEFAULT 0 to images and problems, and make "
                            "images' primary key (visit, snap, det_name)) or register into a new database")
    from sqlalchemy import MetaData, select
    from sqlalchemy.schema import CreateTable

    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")   # the write lock first: the check below is then final
        else:
            conn.exec_driver_sql("LOCK TABLE images, problems IN ACCESS EXCLUSIVE MODE")
        if "snap" not in _table_columns(conn, "problems"):
            conn.exec_driver_sql("ALTER TABLE problems ADD COLUMN snap INTEGER NOT NULL DEFAULT 0")
        if "snap" in _table_columns(conn, "images"):
            return
        images = _tables()[1]
        new = images.to_metadata(MetaData(), name="images_with_snap")
        conn.execute(CreateTable(new))
        old_columns = [c for c in IMAGE_COLUMNS if c != "snap"]
        rows = conn.execute(select(*(images.c[c] for c in old_columns)))
        while batch := rows.fetchmany(10000):
            out = []
            for row in batch:
                data = dict(zip(old_columns, row))
                m = IMAGE_RE.match(os.path.basename(str(data["path"])))
                out.append({**data, "snap": int(m.group(2)) if m else 0})
            conn.execute(new.insert(), out)
        conn.exec_driver_sql("DROP TABLE images")
        conn.exec_driver_sql("ALTER TABLE images_with_snap RENAME TO images")


# --- per-sensor records (written on the compute node) -----------------------------------------------
def read_validation(path: str | os.PathLike | None, sensor: tuple | None = None) -> dict[str, Any]:
    """The validation columns from a validation JSON (all None when no file is given).

    Parameters:
        path:    the validation JSON, or None.
        sensor:  (visit, snap, det_name) the validation must be of [default: None, not checked]; the
                 validation's snap is its ``snap`` key, else its image name's (records written
                 before the key), else 0.

    Raises:
        RegistryError: the file is not JSON, it is another sensor's, or its status is not ``ok``/``flagged``.
    """
    out: dict[str, Any] = {"validation_status": None, "validation_flags": None,
                           **{k: None for k in VALIDATION_FIELDS[2:]}}
    if not path:
        return out
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise RegistryError(os.fspath(path), f"cannot read the validation record: {exc}", None,
                            "rerun dc2flow validate") from None
    if sensor is not None and (data.get("visit"), _snap_of(data), data.get("det_name")) != tuple(sensor):
        raise RegistryError(os.fspath(path), "validation of another sensor",
                            f"visit {data.get('visit')} snap {_snap_of(data)} {data.get('det_name')}",
                            f"pass visit {sensor[0]} snap {sensor[1]} {sensor[2]}'s validation in the record's place")
    if data.get("status") not in ("ok", "flagged"):
        raise RegistryError(os.fspath(path), "validation status is not 'ok' or 'flagged'", data.get("status"),
                            "rerun dc2flow validate")
    out["validation_status"] = data["status"]
    out["validation_flags"] = json.dumps(list(data.get("flags", [])))
    for key in VALIDATION_FIELDS[2:]:
        value = data.get(key)
        out[key] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return out


def _snap_of(data: dict) -> int:
    """A record's snap: its ``snap`` key, else the snap in its image name (``image`` or ``path``), else 0."""
    if isinstance(data.get("snap"), int) and not isinstance(data.get("snap"), bool):
        return data["snap"]
    m = IMAGE_RE.match(os.path.basename(str(data.get("image") or data.get("path") or "")))
    return int(m.group(2)) if m else 0


def make_record(image: str | os.PathLike, outdir: str | os.PathLike, bundle: str | None = None,
                benchmark: str | os.PathLike | None = None, validation: str | os.PathLike | None = None) -> dict:
    """The registry row of one rendered image, as a JSON-ready dict.

    Parameters:
        image:      the eimage FITS file.
        outdir:     the campaign's output root; the stored path is relative to it.
        bundle:     the bundle (Slurm group job) that rendered it [default: None].
        benchmark:  the render job's Snakemake benchmark TSV; read if present [default: None].
        validation: the validation JSON of this sensor [default: None: validation columns NULL].

    Raises:
        RegistryError: the file name is not an eimage name, or the FITS header cannot be read.
    """
    from astropy.io import fits

    name = os.path.basename(image)
    m = IMAGE_RE.match(name)
    if not m:
        raise RegistryError(os.fspath(image), "not an eimage file name", name,
                            "pass eimage_{visit:08d}-{snap}-{band}-{det_name}-det{det_num:03d}.fits")
    try:
        header = fits.getheader(image)
    except OSError as exc:
        raise RegistryError(os.fspath(image), f"cannot read the FITS header: {exc}", None,
                            "remove the file and rerun the render") from None
    rel = os.path.relpath(os.path.abspath(image), os.path.abspath(outdir))
    row: dict[str, Any] = {
        "visit": int(m.group(1)), "snap": int(m.group(2)), "det_name": m.group(4), "det_num": int(m.group(5)), "band": m.group(3),
        "path": rel, "bytes": os.path.getsize(image), "datasum": header.get("DATASUM"),
        "checksum": header.get("CHECKSUM"), "sha256": sha256_file(image), "bundle": bundle or None,
        "catalog_sha256": ",".join(str(header[k]) for k in sorted(header, key=_catsha_index) if k.startswith("CATSHA")),
        "recorded_utc": utc_now(),
    }
    for card, column in HEADER_FIELDS.items():
        row[column] = header.get(card)
    row.update(read_benchmark(benchmark))
    row.update(read_validation(validation))
    return {"record_version": RECORD_VERSION, **row}


def bundle_from_plan(plan: str | os.PathLike, image: str | os.PathLike) -> str | None:
    """The bundle of an image's (visit, snap, det_name) in a bundle plan CSV; None when the plan lacks it."""
    from .packing import read_plan

    m = IMAGE_RE.match(os.path.basename(image))
    if not m or not os.path.exists(plan):
        return None
    key = (int(m.group(1)), int(m.group(2)), m.group(4))
    return next((r.bundle for r in read_plan(plan) if (r.visit, r.snap, r.det_name) == key), None)


def _catsha_index(key: str) -> int:
    return int(key[6:]) if key.startswith("CATSHA") and key[6:].isdigit() else -1


def write_record(out: str | os.PathLike, record: dict) -> None:
    """Write a record JSON atomically."""
    write_json(out, record)


def read_record(path: str | os.PathLike) -> dict:
    """A record JSON back as a row of ``images``.

    A record written before the ``snap`` key gets the snap of its image name (``path``).

    Raises:
        RegistryError: not JSON, another record version, or a column missing.
    """
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise RegistryError(os.fspath(path), f"cannot read the record: {exc}", None, "rerun dc2flow record") from None
    if data.get("record_version") != RECORD_VERSION:
        raise RegistryError(os.fspath(path), "unknown record version", data.get("record_version"),
                            f"rerun dc2flow record (version {RECORD_VERSION})")
    if "snap" not in data and isinstance(data.get("path"), str):
        data["snap"] = _snap_of(data)
    missing = [c for c in IMAGE_COLUMNS if c not in data]
    if missing:
        raise RegistryError(os.fspath(path), "missing key", missing[0], "rerun dc2flow record")
    return {c: data[c] for c in IMAGE_COLUMNS}


def register(records: Sequence[str | os.PathLike], url: str, validations: Sequence[str | os.PathLike] | None = None,
             benchmarks: Sequence[str | os.PathLike] | None = None) -> int:
    """Upsert records into ``images`` in one transaction; returns the number of rows written.

    Every record is read (and checked) before the transaction starts, so a bad record changes
    nothing.  Rows are replaced by primary key (visit, snap, det_name): re-registering never duplicates.
    ``validations`` and ``benchmarks``: see :func:`merge_rows`.

    Raises:
        RegistryError: a record is bad, the lists differ in length, or a validation is another sensor's.
    """
    return len(register_rows(merge_rows(records, validations, benchmarks), url))


def merge_rows(records: Sequence[str | os.PathLike], validations: Sequence[str | os.PathLike] | None = None,
               benchmarks: Sequence[str | os.PathLike] | None = None) -> list[dict]:
    """The ``images`` rows of record JSONs, with the columns a record written by the render job
    itself cannot know yet filled from ``validations`` (validation JSONs) and ``benchmarks`` (the
    renders' Snakemake benchmark TSVs, NULL when missing), one per record in the same order.

    Raises:
        RegistryError: a record is bad, the lists differ in length, or a validation is another sensor's.
    """
    records = list(records)
    rows = [read_record(p) for p in records]
    for name, extra in (("validations", validations), ("benchmarks", benchmarks)):
        if extra is not None and len(extra) != len(rows):
            raise RegistryError(os.fspath(records[0]) if records else "register", f"{len(rows)} records but "
                                f"{len(extra)} {name}", None, f"pass one of the {name} per record, in the same order")
    for i, row in enumerate(rows):
        if benchmarks is not None:
            row.update(read_benchmark(benchmarks[i]))
        if validations is not None:
            row.update(read_validation(validations[i], (row["visit"], row["snap"], row["det_name"])))
    return rows


def register_rows(rows: list[dict], url: str) -> list[dict]:
    """Upsert rows (from :func:`merge_rows`) into ``images`` in one transaction; returns them."""
    engine = connect(url)
    try:
        with engine.begin() as conn:
            if rows:
                _upsert(conn, rows)
    finally:
        engine.dispose()
    return rows


def _upsert(conn, rows: list[dict]) -> None:
    """Insert or replace rows by (visit, snap, det_name), as one executemany where the dialect allows it."""
    key = ("visit", "snap", "det_name")
    if conn.dialect.name in ("sqlite", "postgresql"):
        if conn.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(_tables()[1])
        stmt = stmt.on_conflict_do_update(index_elements=list(key),
                                          set_={c: stmt.excluded[c] for c in IMAGE_COLUMNS if c not in key})
        conn.execute(stmt, rows)
    else:  # any other backend: delete + insert in the same transaction
        for row in rows:
            images = _tables()[1]
            conn.execute(images.delete().where(images.c.visit == row["visit"], images.c.snap == row["snap"],
                                               images.c.det_name == row["det_name"]))
        conn.execute(_tables()[1].insert(), rows)


# --- problems (from the viewer) ----------------------------------------------------------------------
def add_problem(url_or_engine, visit: int, det_name: str, category: str, comment: str,
                categories: Iterable[str], max_comment_chars: int, snap: int = 0) -> int:
    """Store one reported problem (of the image of ``visit``, ``snap``, ``det_name``); returns its id.

    Raises:
        RegistryError: a field is out of its allowed set or too long.
    """
    check_problem(visit, det_name, category, comment, categories, max_comment_chars)
    if isinstance(snap, bool) or not isinstance(snap, int) or not 0 <= snap < 100:
        raise RegistryError("snap", "not a snap", snap, "give an integer 0, 1, ...")
    engine = connect(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    with engine.begin() as conn:
        result = conn.execute(_tables()[2].insert().values(visit=int(visit), snap=snap, det_name=det_name,
                                                       category=category, comment=comment, created_utc=utc_now()))
        return int(result.inserted_primary_key[0])


def check_problem(visit: Any, det_name: Any, category: Any, comment: Any, categories: Iterable[str],
                  max_comment_chars: int) -> None:
    """Raise :class:`RegistryError` naming the first invalid field of a problem report."""
    categories = list(categories)
    if not (isinstance(visit, int) and 0 <= visit < 10**8):
        raise RegistryError("visit", "not a visit number", visit, "give an integer of at most 8 digits")
    if not (isinstance(det_name, str) and DET_NAME_RE.match(det_name)):
        raise RegistryError("det_name", "not a sensor name", det_name, "give a name such as R22_S11")
    if category not in categories:
        raise RegistryError("category", "unknown problem category", category, f"use one of {', '.join(categories)}")
    if not isinstance(comment, str) or len(comment) > max_comment_chars:
        raise RegistryError("comment", f"longer than {max_comment_chars} characters",
                            len(comment) if isinstance(comment, str) else comment, "shorten it")


def list_problems(engine) -> list[dict]:
    from sqlalchemy import select

    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(_tables()[2]).order_by(_tables()[2].c.id.desc()))]


# --- queries -----------------------------------------------------------------------------------------
QUERIES = {
    "failed_validation": "SELECT visit, snap, det_name, band, validation_flags, path FROM images "
                         "WHERE validation_status = 'flagged' ORDER BY visit, snap, det_name",
    "config_hash": "SELECT visit, snap, det_name, band, path FROM images WHERE config_hash = :value "
                   "ORDER BY visit, snap, det_name",
    "core_hours_by_band": "SELECT band, COUNT(*) AS images, "
                          "ROUND(CAST(SUM(COALESCE(cpu_time_s, runtime_s)) / 3600.0 AS NUMERIC), 4) AS core_hours "
                          "FROM images GROUP BY band ORDER BY band",
    "problems": "SELECT id, visit, snap, det_name, category, comment, created_utc FROM problems ORDER BY id",
}


def query(url: str, name: str, value: str | None = None) -> tuple[list[str], list[tuple]]:
    """Run one of the named :data:`QUERIES`; returns (column names, rows)."""
    from sqlalchemy import text

    if name not in QUERIES:
        raise RegistryError("query", "unknown query", name, f"use one of {', '.join(QUERIES)}")
    engine = connect(url)
    try:
        with engine.connect() as conn:
            result = conn.execute(text(QUERIES[name]), {"value": value} if value is not None else {})
            return list(result.keys()), [tuple(r) for r in result]
    finally:
        engine.dispose()


def format_table(columns: list[str], rows: list[tuple]) -> str:
    """A plain text table (column widths from the contents), with a row count."""
    cells = [list(map(str, columns))] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + [f"({len(rows)} rows)"])


def write_visit_summary(out: str | os.PathLike, rows: list[dict]) -> None:
    """The per-exposure registration target: one line per registered row (TSV), atomically."""
    from .io import atomic_output

    with atomic_output(out) as tmp, open(tmp, "w") as fh:
        fh.write("visit\tsnap\tdet_name\tpath\tsha256\tvalidation_status\n")
        for r in rows:
            fh.write(f"{r['visit']}\t{r['snap']}\t{r['det_name']}\t{r['path']}\t{r['sha256']}\t{r['validation_status'] or ''}\n")
