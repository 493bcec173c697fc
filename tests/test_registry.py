"""The campaign registry: rows for every rendered sensor, status from the files, queries, no duplicates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits
from sqlalchemy import select

from conftest import REGISTRY_SENSORS, campaign_args, env_with_venv, run_snakemake, setup_failed
from dc2flow import registry
from dc2flow import status as files_status
from dc2flow.errors import RegistryError
from dc2flow.io import sha256_file

pytestmark = pytest.mark.slow


def dc2flow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dc2flow.cli", *args], capture_output=True, text=True,
                          env=env_with_venv(), timeout=120)


def rows(url: str) -> list[dict]:
    engine = registry.connect(url)
    with engine.connect() as conn:
        out = [dict(r._mapping) for r in conn.execute(select(registry.IMAGES))]
    engine.dispose()
    return out


@pytest.fixture(scope="module")
def out(registered_campaign):
    return registered_campaign / "out"


def visit_inputs(out) -> tuple[list[str], list[str], list[str]]:
    """What register_visit passes: the render jobs' records, and per record its validation and benchmark."""
    records = sorted(map(str, (out / "registry" / "records").rglob("*.json")))
    dets = [json.loads(Path(r).read_text())["det_name"] for r in records]
    validations = [str(out / "validation" / "00001001" / f"{d}.json") for d in dets]
    benchmarks = [str(next((out / "benchmarks" / "render" / "00001001").glob(f"*-{d}-*.tsv"))) for d in dets]
    return records, validations, benchmarks


def test_every_rendered_sensor_has_a_row_with_correct_checksums(out):
    images = sorted((out / "00001001").glob("eimage_*.fits"))
    assert len(images) == len(REGISTRY_SENSORS)
    by_path = {r["path"]: r for r in rows(registry.default_url(out))}
    assert set(by_path) == {f"00001001/{p.name}" for p in images}
    for path in images:
        row = by_path[f"00001001/{path.name}"]
        assert row["sha256"] == sha256_file(path) and row["bytes"] == path.stat().st_size
        with fits.open(path, checksum=True) as hdul:
            assert hdul[0].verify_checksum() == 1
            h = hdul[0].header
        assert (row["datasum"], row["checksum"]) == (h["DATASUM"], h["CHECKSUM"])
        assert (row["config_hash"], row["seed"], row["catalog_seed"]) == (h["CFGHASH"], h["SEED"], h["CATSEED"])
        assert row["catalog_sha256"].split(",")[0] == h["CATSHA0"]
        assert (row["dc2flow_version"], row["galsim_version"], row["container_image"]) == (h["DC2FLOW"], h["GALSIM"], "none")
        assert row["band"] == "r" and row["bundle"] == "b0000" and row["det_num"] == h["DET_NUM"]
        assert row["runtime_s"] > 0 and row["max_rss_mb"] > 0   # from the render job's benchmark record
        record = json.loads((out / "validation" / "00001001" / f"{h['DET_NAME']}.json").read_text())
        assert row["validation_status"] == record["status"] and row["n_matched"] == record["n_matched"]
    assert (out / "registry" / "visits" / "00001001.tsv").exists()
    assert list((out / "benchmarks" / "registry").rglob("*.tsv")) and list((out / "logs" / "registry").rglob("*.log"))


def test_rerun_adds_nothing_and_reregistering_adds_no_duplicates(registered_campaign, tiny_catalog, out):
    proc = run_snakemake(registered_campaign, *campaign_args(tiny_catalog))
    assert "Nothing to be done" in proc.stdout + proc.stderr
    url = registry.default_url(out)
    before = sorted((r["visit"], r["det_name"]) for r in rows(url))
    records, validations, benchmarks = visit_inputs(out)
    for _ in range(2):
        proc = dc2flow("register", *records, "--validations", *validations, "--benchmarks", *benchmarks, "--db", url)
        assert proc.returncode == 0, proc.stderr
    after = sorted((r["visit"], r["det_name"]) for r in rows(url))
    assert after == before and len(after) == len(REGISTRY_SENSORS)


def _copy(out, tmp_path):
    """The campaign's files hard-linked into tmp_path (the shared campaign stays untouched)."""
    dst = tmp_path / "out"
    shutil.copytree(out, dst, copy_function=os.link)
    return dst


def test_status_counts_match_the_files(out, tmp_path):
    status = files_status.campaign_status(out)
    assert status["totals"] == {"done": 2, "failed": 0, "running": 0, "missing": 0, "expected": 2}
    assert status["expected_from"] == "bundle plan" and status["node_hours"] > 0 and status["job_hours"] > 0

    copy = _copy(out, tmp_path)
    s11, s12 = (next((copy / "00001001").glob(f"eimage_*-{d}-*.fits")) for d in REGISTRY_SENSORS)
    s11.unlink()                                             # deleted after its job finished: missing
    s12.unlink()                                             # and this one's render failed
    log = next((copy / "logs" / "render" / "00001001").glob("*-R22_S12-*.log"))
    log.unlink()
    log.write_text("INFO rendering\ndc2flow render: error: p.parquet: cannot read; rerun the step.\n")
    proc = dc2flow("status", str(copy), "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["totals"] == {"done": 0, "failed": 1, "running": 0, "missing": 1, "expected": 2}
    assert status["visits"][0]["failed_sensors"] == ["R22_S12"] and status["visits"][0]["missing_sensors"] == ["R22_S11"]
    text = dc2flow("status", str(copy)).stdout
    assert "R22_S12" in text and "0/2" in text and "node-hours" in text


def _mark_incomplete(workdir: Path, output: str) -> None:
    """An incomplete marker as Snakemake's own file persistence names it (its encoder, not ours)."""
    from types import SimpleNamespace

    from snakemake.persistence.file import FilePersistence

    top = str(workdir / ".snakemake" / "incomplete")
    path = FilePersistence._record_path(SimpleNamespace(_fetch_max_len=lambda subject: 255), top, output)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_text('{"external_jobid": null}')


def test_killed_render_is_failed_and_only_a_marked_one_running(out, tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    copy = _copy(out, wd)                                    # wd/out, as Snakemake's outdir=out in wd
    image = next((copy / "00001001").glob("eimage_*-R22_S12-*.fits"))
    image.unlink()
    next((copy / "benchmarks" / "render" / "00001001").glob("*-R22_S12-*.tsv")).unlink()
    log = next((copy / "logs" / "render" / "00001001").glob("*-R22_S12-*.log"))
    log.unlink()
    log.write_text("INFO rendering\n")                      # killed (memory, scancel, node): no error line
    status = files_status.campaign_status(copy, wd)
    assert status["totals"] == {"done": 1, "failed": 1, "running": 0, "missing": 0, "expected": 2}
    assert status["visits"][0]["failed_sensors"] == ["R22_S12"]

    _mark_incomplete(wd, os.path.relpath(image, wd))          # Snakemake runs it (again)
    status = files_status.campaign_status(copy, wd)
    assert status["totals"] == {"done": 1, "failed": 0, "running": 1, "missing": 0, "expected": 2}
    assert files_status.campaign_status(copy, tmp_path)["totals"]["running"] == 0   # another workdir: no markers
    proc = subprocess.run([sys.executable, "-m", "dc2flow.cli", "status", "out", "--json"], cwd=wd,
                          capture_output=True, text=True, env=env_with_venv(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["totals"]["running"] == 1   # the current directory is the default workdir

    m = registry.IMAGE_RE.match(image.name)                  # a science error recorded: failed, marker or not
    failures = copy / "failures" / "render"
    failures.mkdir(parents=True)
    (failures / f"{m[1]}_{m[3]}_{m[4]}_{m[5]}.json").write_text("{}")
    assert files_status.campaign_status(copy, wd)["totals"]["failed"] == 1


def test_incomplete_markers_decode_long_and_absolute_paths(tmp_path):
    long = str(tmp_path / "out" / ("d" * 200) / ("e" * 200) / "eimage_00001001-0-r-R22_S11-det094.fits")
    _mark_incomplete(tmp_path, long)
    _mark_incomplete(tmp_path, "out/00001001/eimage_00001001-0-r-R22_S12-det095.fits")
    assert files_status.incomplete_outputs(tmp_path) == {
        os.path.realpath(long), os.path.realpath(tmp_path / "out/00001001/eimage_00001001-0-r-R22_S12-det095.fits")}
    assert files_status.incomplete_outputs(tmp_path / "none") == set()


def test_visit_failed_before_rendering_has_a_row(out, tmp_path):
    copy = _copy(out, tmp_path)
    (copy / "failures" / "catalog").mkdir(parents=True)
    (copy / "failures" / "catalog" / "00002002.json").write_text("{}")
    (copy / "logs" / "catalog" / "00002002.log").write_text("dc2flow parse: error: bad line\n")
    (copy / "logs" / "partition" / "00003003.log").write_text("INFO partitioning\n")   # killed, no record
    status = files_status.campaign_status(copy, tmp_path)
    rows_ = {v["visit"]: v for v in status["visits"]}
    assert rows_[2002]["stage"] == "failed before rendering: catalog" and rows_[2002]["failed"] == 2
    assert rows_[3003]["stage"] == "failed before rendering: partition" and rows_[3003]["expected"] == 2
    assert rows_[1001]["stage"] == "" and rows_[1001]["done"] == 2
    assert status["totals"] == {"done": 2, "failed": 4, "running": 0, "missing": 0, "expected": 6}
    text = files_status.format_status(status)
    assert "failed before rendering: catalog" in text and "2/6" in text and "100.0%" not in text
    old = (copy / "bundles" / "campaign.csv").stat().st_mtime - 60    # an earlier campaign's visit: ignored
    os.utime(copy / "logs" / "partition" / "00003003.log", (old, old))
    assert [v["visit"] for v in files_status.campaign_status(copy, tmp_path)["visits"]] == [1001, 2002]


def test_status_watch_stops_when_the_campaign_is_finished(out):
    proc = dc2flow("status", str(out), "--watch", "0.1")
    assert proc.returncode == 0 and proc.stdout.count("visit  snap  expected") == 1 and "2/2 100.0%" in proc.stdout


def test_validation_figures_fill_the_columns_and_queries_answer(out, tmp_path):
    image = str(next((out / "00001001").glob("eimage_*-R22_S11-*.fits")))
    validation = tmp_path / "R22_S11.json"
    validation.write_text(json.dumps({
        "visit": 1001, "det_name": "R22_S11", "band": "r", "status": "flagged", "flags": ["astrometry"],
        "n_truth": 120, "n_detected": 110, "n_matched": 105, "astrometry_median_px": 0.6,
        "astrometry_median_arcsec": 0.12, "photometry_slope": 1.01, "photometry_median_dmag": 0.02,
        "psf_fwhm_arcsec": 0.81, "psf_fwhm_model_arcsec": 0.8, "sky_e_per_px": 1000.5,
        "sky_model_e_per_px": 1000.0, "thresholds": {"astrometry_median_px": 0.5}}))
    record = tmp_path / "rec.json"
    proc = dc2flow("record", image, "--outdir", str(out), "--validation", str(validation), "--bundle", "b0007",
                   "--benchmark", str(tmp_path / "absent.tsv"), "--out", str(record))
    assert proc.returncode == 0, proc.stderr
    other = registry.make_record(str(next((out / "00001001").glob("eimage_*-R22_S12-*.fits"))), out)
    registry.write_record(tmp_path / "other.json", other)
    url = f"sqlite:///{tmp_path}/reg.sqlite"
    assert registry.register([record, tmp_path / "other.json"], url) == 2
    row = next(r for r in rows(url) if r["det_name"] == "R22_S11")
    assert row["validation_status"] == "flagged" and json.loads(row["validation_flags"]) == ["astrometry"]
    assert row["n_matched"] == 105 and row["psf_fwhm_arcsec"] == 0.81 and row["bundle"] == "b0007"
    assert row["runtime_s"] is None and row["max_rss_mb"] is None     # no benchmark record: NULL

    cols, found = registry.query(url, "failed_validation")
    assert cols[:3] == ["visit", "snap", "det_name"] and [r[:3] for r in found] == [(1001, 0, "R22_S11")]
    _, found = registry.query(url, "config_hash", row["config_hash"])
    assert len(found) == 2
    _, found = registry.query(url, "config_hash", "0000000000000000")
    assert found == []
    registry.add_problem(url, 1001, "R22_S12", "artifact", "a streak", ["artifact"], 100)
    text = dc2flow("query", "--db", url, "--problems").stdout
    assert "a streak" in text and "(1 rows)" in text
    text = dc2flow("query", "--db", url, "--core-hours-by-band").stdout
    assert text.splitlines()[0].split() == ["band", "images", "core_hours"] and "\nr " in text
    text = dc2flow("query", "--db", url, "--failed-validation").stdout
    assert "R22_S11" in text and "R22_S12" not in text


def test_record_columns_are_the_tables_and_records_need_no_sqlalchemy():
    assert registry.IMAGE_COLUMNS == tuple(c.name for c in registry.IMAGES.columns)
    code = "import sys, dc2flow.registry; assert 'sqlalchemy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env=env_with_venv())


def test_register_refuses_validations_out_of_order(out):
    records, validations, benchmarks = visit_inputs(out)
    with pytest.raises(RegistryError, match="validation of another sensor"):
        registry.merge_rows(records, validations[::-1], benchmarks)
    with pytest.raises(RegistryError, match="2 records but 1 benchmarks"):
        registry.merge_rows(records, validations, benchmarks[:1])
    rows_ = registry.merge_rows(records, validations, [str(out / "absent.tsv")] * len(records))
    assert all(r["runtime_s"] is None for r in rows_) and all(r["validation_status"] for r in rows_)


def test_a_bad_record_changes_nothing(out, tmp_path):
    url = f"sqlite:///{tmp_path}/reg.sqlite"
    good = next((out / "registry" / "records").rglob("*.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"record_version": 1, "visit": 1}))
    with pytest.raises(RegistryError, match=r"bad\.json: missing key .*rerun dc2flow record"):
        registry.register([good, bad], url)
    assert rows(url) == []
    proc = dc2flow("register", str(bad), "--db", url)
    assert proc.returncode == 1 and proc.stderr.startswith("dc2flow register: error: ")


def test_bad_database_url_is_named():
    with pytest.raises(RegistryError, match="nosuchdb://x: cannot open the registry database"):
        registry.connect("nosuchdb://x")


def test_problem_fields_are_checked():
    ok = dict(categories=["artifact"], max_comment_chars=10)
    registry.check_problem(1001, "R22_S11", "artifact", "short", **ok)
    for args, field in [((-1, "R22_S11", "artifact", ""), "visit"), ((1, "R2_S11", "artifact", ""), "det_name"),
                        ((1, "R22_S11", "nope", ""), "category"), ((1, "R22_S11", "artifact", "x" * 11), "comment")]:
        with pytest.raises(RegistryError, match=f"^{field}: "):
            registry.check_problem(*args, **ok)


def test_status_reads_every_shard_plan_and_workdir(tmp_path):
    out = tmp_path / "out"
    for shard, visit in (("shard-0000", 7), ("shard-0001", 8)):
        (out / "bundles" / shard).mkdir(parents=True)
        (out / "bundles" / shard / "campaign.csv").write_text("bundle,visit,det_name,mem_mb,runtime_min,bundle_mem_mb\n"
                                                                 f"b0000,{visit},R22_S11,1024,1,1024\n")
    expected, bundles, source = files_status.expected_sensors(str(out))
    assert expected == {(7, 0): ["R22_S11"], (8, 0): ["R22_S11"]} and source == "2 bundle plans"   # (visit, snap)
    assert bundles == {((7, 0), "R22_S11"): "shard-0000/b0000", ((8, 0), "R22_S11"): "shard-0001/b0000"}
    status = files_status.campaign_status(str(out), [tmp_path / "w1", tmp_path / "w2"])
    assert status["workdir"] == f"{tmp_path / 'w1'},{tmp_path / 'w2'}"


def test_status_keeps_the_snaps_of_a_visit_apart(tmp_path):
    out = tmp_path / "out"
    (out / "bundles").mkdir(parents=True)
    (out / "bundles" / "campaign.csv").write_text("bundle,visit,snap,det_name,mem_mb,runtime_min,bundle_mem_mb\n"
                                                  "b0000,449053,0,R22_S11,1024,1,2048\nb0000,449053,1,R22_S11,1024,1,2048\n")
    (out / "00449053").mkdir()
    (out / "00449053" / "eimage_00449053-0-r-R22_S11-det094.fits").write_bytes(b"")   # snap 0 done
    (out / "failures" / "render").mkdir(parents=True)
    (out / "failures" / "render" / "00449053-1_r_R22_S11_094.json").write_text("{}")   # snap 1 failed
    (out / "logs" / "catalog").mkdir(parents=True)
    (out / "logs" / "catalog" / "00449053-2.log").write_text("killed\n")   # a third snap that never got far
    status = files_status.campaign_status(out, tmp_path)
    got = [(v["visit"], v["snap"], v["done"], v["failed"], v["stage"]) for v in status["visits"]]
    assert got == [(449053, 0, 1, 0, ""), (449053, 1, 0, 1, ""), (449053, 2, 0, 1, "failed before rendering: catalog")]
    assert "449053     1" in files_status.format_status(status)


def test_progress_bar():
    assert files_status.progress_bar(1, 4, width=8) == "[##......] 1/4  25.0%"
    assert files_status.progress_bar(0, 0, width=4) == "[####] 0/0 100.0%"


# --- the same code on a real PostgreSQL (Debian's postgresql package, a throwaway cluster) ----------
@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    import glob
    import shutil as sh
    import socket

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        setup_failed("PostgreSQL server binaries not installed (bash scripts/install-postgresql.sh, or apt-get install postgresql)")
    bindir = os.path.dirname(bins[-1])
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="dc2flow-pg-"))  # not under pytest's 0700 tree: postgres must enter it
    data = top / "data"
    data.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
        os.chmod(top, 0o755)
        sh.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(*cmd):
        return subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)

    proc = run(f"{bindir}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    assert proc.returncode == 0, proc.stderr
    proc = run(f"{bindir}/pg_ctl", "-D", str(data), "-w", "-l", str(data / "server.log"), "-o",
               f"-h 127.0.0.1 -p {port} -k {data}", "start")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    run(f"{bindir}/pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
    sh.rmtree(top, ignore_errors=True)


def test_postgresql_registry_takes_the_same_records(out, postgres_url):
    records, validations, benchmarks = visit_inputs(out)
    for _ in range(2):   # upsert: no duplicates
        assert registry.register(records, postgres_url, validations, benchmarks) == len(REGISTRY_SENSORS)
    sqlite_rows = sorted(rows(registry.default_url(out)), key=lambda r: r["det_name"])
    pg_rows = sorted(rows(postgres_url), key=lambda r: r["det_name"])
    assert pg_rows == sqlite_rows
    _, found = registry.query(postgres_url, "core_hours_by_band")
    assert found[0][:2] == ("r", 2)
    registry.add_problem(postgres_url, 1001, "R22_S11", "artifact", "seen on PostgreSQL", ["artifact"], 100)
    _, found = registry.query(postgres_url, "problems")
    assert found[0][5] == "seen on PostgreSQL" and found[0][2] == 0   # (id, visit, snap, det_name, category, comment)


def _old_registry(url: str) -> None:
    """A registry as made before snaps: images keyed (visit, det_name), no snap anywhere; two rows
    (R22_S11 of snap 1 and R22_S12 of snap 0, by their image names) and a problem."""
    from sqlalchemy import Column, MetaData, Table, create_engine

    md = MetaData()
    Table("images", md, *[Column(c.name, c.type, primary_key=c.name in ("visit", "det_name"), nullable=c.nullable)
                          for c in registry.IMAGES.columns if c.name != "snap"])
    Table("problems", md, *[Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
                            for c in registry.PROBLEMS.columns if c.name != "snap"])
    engine = create_engine(url)
    md.create_all(engine)
    base = {c: None for c in registry.IMAGE_COLUMNS if c != "snap"}
    with engine.begin() as conn:
        for det, snap, num in (("R22_S11", 1, 94), ("R22_S12", 0, 95)):
            conn.execute(md.tables["images"].insert(), {**base, "visit": 449053, "det_name": det, "det_num": num,
                         "band": "r", "path": f"00449053/eimage_00449053-{snap}-r-{det}-det{num:03d}.fits",
                         "bytes": 1, "sha256": f"{snap}" * 64, "recorded_utc": "2026-01-01T00:00:00Z"})
        conn.execute(md.tables["problems"].insert(), {"visit": 449053, "det_name": "R22_S11", "category": "artifact",
                                                      "comment": "old", "created_utc": "2026-01-01T00:00:00Z"})
    engine.dispose()


def _check_migrated(url: str) -> None:
    from sqlalchemy import inspect

    engine = registry.connect(url)   # migrates
    try:
        assert inspect(engine).get_pk_constraint("images")["constrained_columns"] == ["visit", "snap", "det_name"]
        found = sorted((r["snap"], r["det_name"], r["sha256"][0]) for r in rows(url))
        assert found == [(0, "R22_S12", "0"), (1, "R22_S11", "1")]            # each row's snap from its image name
        assert [(p["snap"], p["comment"]) for p in registry.list_problems(engine)] == [(0, "old")]
        # the same sensor of the other snap is a row of its own now
        template = {c: None for c in registry.IMAGE_COLUMNS}
        new = {**template, "visit": 449053, "snap": 0, "det_name": "R22_S11", "det_num": 94, "band": "r",
               "path": "00449053/eimage_00449053-0-r-R22_S11-det094.fits", "bytes": 2, "sha256": "2" * 64,
               "recorded_utc": "2026-01-02T00:00:00Z"}
        registry.register_rows([new], url)
        assert len(rows(url)) == 3
        registry.add_problem(engine, 449053, "R22_S11", "artifact", "snap 1", ["artifact"], 100, snap=1)
        assert sorted(p["snap"] for p in registry.list_problems(engine)) == [0, 1]
    finally:
        engine.dispose()
    registry.connect(url).dispose()   # connecting again changes nothing
    assert len(rows(url)) == 3


def test_a_registry_from_before_snaps_is_migrated_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path}/old.sqlite"
    _old_registry(url)
    # merges that start at once all open it: one migrates (under the write lock), the others find it done
    code = f"from dc2flow import registry; registry.connect({url!r}).dispose()"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env_with_venv())
             for _ in range(4)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    _check_migrated(url)


def test_a_registry_from_before_snaps_is_migrated_postgresql(postgres_url):
    from sqlalchemy import create_engine

    engine = create_engine(postgres_url)
    with engine.begin() as conn:   # a database of its own on the shared test cluster
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS before_snaps CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA before_snaps")
    engine.dispose()
    url = postgres_url + "?options=-csearch_path%3Dbefore_snaps"
    _old_registry(url)
    _check_migrated(url)


def test_old_records_take_the_snap_of_their_image_name(tmp_path):
    record = {"record_version": 1, **{c: None for c in registry.IMAGE_COLUMNS if c != "snap"},
              "visit": 449053, "det_name": "R22_S11", "path": "00449053/eimage_00449053-1-r-R22_S11-det094.fits"}
    (tmp_path / "r.json").write_text(json.dumps(record))
    assert registry.read_record(tmp_path / "r.json")["snap"] == 1


def test_concurrent_merges_on_the_driver_host_lose_nothing(out, tmp_path):
    """Several register_visit jobs run side by side on the driver host: WAL + busy timeout serialise them."""
    template = json.loads(next((out / "registry" / "records").rglob("*.json")).read_text())
    from dc2flow.camera import DET_NAMES

    batches = []
    for visit in range(4):
        paths = []
        for det_name in DET_NAMES:
            path = tmp_path / f"{visit}" / f"{det_name}.json"
            registry.write_record(path, {**template, "visit": 2000 + visit, "det_name": det_name})
            paths.append(str(path))
        batches.append(paths)
    url = f"sqlite:///{tmp_path}/reg.sqlite"
    # no tables yet: the first merges of a campaign race to create them
    procs = [subprocess.Popen([sys.executable, "-m", "dc2flow.cli", "register", *paths, "--db", url],
                              stderr=subprocess.PIPE, text=True, env=env_with_venv()) for paths in batches * 2]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    found = rows(url)
    assert len(found) == 4 * 189 and len({(r["visit"], r["det_name"]) for r in found}) == 4 * 189
