"""The cost forecast: sampling, scaling, the flat rule, the site profile, bad inputs, the CLI."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from dc2flow.packing import Job, Node, dc2_flat_bundles
from dc2flow.errors import ConfigError, ForecastError
from dc2flow.forecast import (PER_VISIT_SLURM_JOBS, Site, VisitSample, costs, disk_bytes, flat_bundles, image_bytes,
                              read_profile, sample_visits)

DC2FLOW = str(Path(sys.executable).parent / "dc2flow")
PARAMS = {"job_startup_s": 10.0, "validate_s_per_sensor": 2.0, "mosaic_s_per_sensor": 0.5, "per_visit_job_s": 60.0,
          "truth_bytes_per_object": 34.0}


def _sample(visit, n_sensors=4, runtime=100.0, n_objects=2.0):
    rows = tuple({"visit": visit, "det_name": f"R22_S{k // 3}{k % 3}", "mem_gb": 1.0, "runtime_s": runtime,
                  "n_objects": n_objects} for k in range(n_sensors))
    times = {"parse_catalog": 20.0, "partition_visit": 30.0, "estimate_visit": 5.0}
    return VisitSample(visit, rows, times, {k: "timed here" for k in times}, catalog_bytes=1000, partition_bytes=500)


def test_sample_is_evenly_spaced_and_deterministic():
    visits = list(range(100, 200))
    assert sample_visits(visits, 3) == [100, 150, 199] == sample_visits(visits[::-1], 3)
    assert sample_visits(visits, 1) == [149]
    assert sample_visits([5, 3, 4], 10) == [3, 4, 5]
    assert len(sample_visits(visits, 10)) == 10
    with pytest.raises(ConfigError, match="--sample"):
        sample_visits(visits, 0)


def test_costs_follow_the_definitions_and_scale_with_visits():
    site = Site(Node(20.0, 2, 0.5), PARAMS, cpus_per_job=1)
    samples = [_sample(1), _sample(2)]
    one = costs([100.0, 50.0, 80.0], samples, 4, site, scale=1.0)
    assert one.bundles == 3 and one.per_visit_jobs == 2 * len(PER_VISIT_SLURM_JOBS) and one.slurm_jobs == 13
    assert one.node_hours_bundles == pytest.approx((230.0 + 3 * 10.0) / 3600)
    # per visit: parse 20 + partition 30 + estimate 5 + validate 4 x 2 + mosaic 4 x 0.5, each + 10 s, on 1 of 2 cores
    per_visit = (20 + 30 + 5 + 8 + 2 + 5 * 10.0) / 2
    assert one.node_hours_per_visit == pytest.approx(2 * per_visit / 3600)
    assert one.longest_bundle_h == pytest.approx(110.0 / 3600)
    assert one.critical_path_h == pytest.approx((55 + 30 + 110 + 10 + 20) / 3600)
    assert one.wall_time_h(1) == pytest.approx(one.node_hours)
    assert one.wall_time_h(1000) == pytest.approx(one.critical_path_h)
    many = costs([100.0, 50.0, 80.0], samples, 4, site, scale=50.0)       # 100 visits from a sample of 2
    assert (many.bundles, many.per_visit_jobs) == (150, 100 * len(PER_VISIT_SLURM_JOBS))
    assert many.node_hours == pytest.approx(50 * one.node_hours)
    assert (many.longest_bundle_h, many.critical_path_h) == (one.longest_bundle_h, one.critical_path_h)


def test_flat_rule_bundles_match_the_bundler_count_and_take_the_slowest_member():
    jobs = [Job(v, f"R22_S{k // 3}{k % 3}", 0.5, 10.0 * (k + 1)) for v in (1, 2) for k in range(9)]
    node = Node(20.0, 4, 0.5)                                  # flat: min(4 cores, (20 - 10) / 2 = 5) = 4 a bundle
    groups = flat_bundles(jobs, node)
    assert len(groups) == dc2_flat_bundles(jobs, node) == 6
    assert [max(j.runtime_s for j in g) for g in groups] == [40.0, 80.0, 90.0] * 2
    assert flat_bundles(jobs, Node(11.0, 4, 0.5)) is None     # 10 GB a visit + 2 GB a sensor > 11 GB


def test_image_bytes_from_the_sensor_geometry():
    assert image_bytes("R22_S11") == 65_612_160               # an e2v eimage written by dc2flow render (TAN-SIP header)
    assert image_bytes("R01_S00") == 2880 * (3 + math.ceil(4072 * 4000 * 4 / 2880))


def test_images_and_samples_are_sized_by_the_run_s_camera(small_e2v_policy, tiny_catalog, tmp_path):
    from dc2flow.camera import load_camera
    from dc2flow.config import load
    from dc2flow.estimate import ResourceModel
    from dc2flow.forecast import compute_sample

    cam = load_camera(str(small_e2v_policy))          # e2v sensors of 2048 x 2002 pixels
    small = 2880 * (3 + math.ceil(2048 * 2002 * 4 / 2880))
    assert image_bytes("R22_S11", cam) == small and image_bytes("R01_S00", cam) == image_bytes("R01_S00")
    assert disk_bytes([_sample(1)], PARAMS, 1.0, cam)["images"] == 4 * small
    config = load(overrides={"camera": {"description": str(small_e2v_policy)}})
    sample = compute_sample(tiny_catalog, ["R22_S11"], config, ResourceModel.read(), tmp_path)
    assert [r["image_mpix"] for r in sample.rows] == [pytest.approx(2048 * 2002 / 1e6)]


def test_disk_is_scaled_and_unknown_stage_files_stay_unknown():
    disk = disk_bytes([_sample(1), _sample(2)], PARAMS, scale=10.0)
    assert disk["images"] == pytest.approx(10 * 8 * image_bytes("R22_S11"))
    assert disk["truth_tables"] == pytest.approx(10 * 8 * (100 + 34.0 * 2000))
    assert (disk["partitions"], disk["catalogs"]) == (10_000, 20_000)
    reused = VisitSample(3, _sample(3).rows, {}, {})
    assert disk_bytes([reused], PARAMS, 1.0)["partitions"] is None


def test_node_shape_and_parameters_come_from_the_profile():
    config, site = read_profile(REPO / "profiles" / "ci-slurm")
    assert site.node == Node(20.0, 2, 0.5, 86400.0) and site.cpus_per_job == 1
    assert site.forecast["job_startup_s"] == 7.5 and config["bundle"]["node_memory_gb"] == 20.0
    _, site = read_profile(REPO / "profiles" / "perlmutter", overrides={"bundle": {"node_cores": 64}})
    assert (site.node.memory_gb, site.node.cores, site.node.time_limit_s) == (480.0, 64, 43200.0)
    assert site.forecast["job_startup_s"] == 30.0            # the default of config/config.yaml
    _, site = read_profile(None)
    assert site.node.memory_gb == 16.0 and site.source == "config/config.yaml"


def test_bad_profile_is_named_with_file_and_line(tmp_path):
    with pytest.raises(ForecastError, match="no config.yaml"):
        read_profile(tmp_path)
    (tmp_path / "config.yaml").write_text("executor: slurm\ncores: 4\nconfigfiles:\n  - nowhere/node.yaml\n")
    with pytest.raises(ForecastError, match=r"config.yaml:4: configfiles entry is not a file \('nowhere/node.yaml'\)"):
        read_profile(tmp_path)
    (tmp_path / "config.yaml").write_text("executor: slurm\ncores: many\n")
    with pytest.raises(ForecastError, match=r"config.yaml:2: 'cores' is not a positive integer"):
        read_profile(tmp_path)
    node = tmp_path / "node.yaml"
    node.write_text("bundle:\n  node_memory_gb: -3\n")
    (tmp_path / "config.yaml").write_text(f"cores: 4\nconfigfiles:\n  - {node}\n")
    with pytest.raises(ConfigError, match="bundle.node_memory_gb"):
        read_profile(tmp_path)


def _forecast(*args):
    return subprocess.run([DC2FLOW, "forecast", *args], capture_output=True, text=True, timeout=300, cwd=REPO)


def test_cli_forecast_on_a_tiny_catalog(tiny_catalog, small_e2v_policy, tmp_path):
    """Two sensors of the tiny visit on the test cluster's node: every figure, as a table and as JSON;
    then the same from the estimates table it computed, reused, and a broken copy of it."""
    args = [str(tiny_catalog), "--sensors", "R22_S11,R22_S12", "--profile", "profiles/ci-slurm", "--nodes", "1",
            "--nodes", "3"]
    proc = _forecast(*args, "--json", "--workdir", str(tmp_path / "work"))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["campaign"] == {"visits": 1, "sampled_visits": [1001], "scale": 1.0, "sensors_per_visit": 2,
                               "sensor_jobs": 2}
    ours, flat = out["dc2flow"], out["dc2_flat"]
    assert ours["bundles"] == flat["bundles"] == 1                # 2 sensors, 2 cores, 20 GB
    assert ours["slurm_jobs"] == 1 + len(PER_VISIT_SLURM_JOBS)
    assert ours["node_hours"] == pytest.approx(ours["node_hours_bundles"] + ours["node_hours_per_visit"])
    assert ours["node_hours_bundles"] > 7.5 / 3600                # the slowest render + the site's start-up
    assert [w["nodes"] for w in ours["wall_time"]] == [1, 3]
    assert out["disk_gb"]["images"] == pytest.approx(2 * 65_612_160 / 1e9)
    assert out["disk_gb"]["partitions"] > 0 and out["disk_gb"]["catalogs"] > 0
    assert out["per_visit_runtime_source"]["parse_catalog"] == ["timed here"]

    table = _forecast(*args)
    assert table.returncode == 0 and "DC2 flat rule" in table.stdout and "node-hours" in table.stdout
    assert "wall time at 3 nodes" in table.stdout

    # reuse an estimates table made from the sample's files (as a run's estimates/ folder holds it)
    from dc2flow.catalog import Visit
    from dc2flow.estimate import ResourceModel, estimate_visit, write_estimates

    estimates = tmp_path / "run" / "estimates"
    visit = Visit.read_json(tmp_path / "work" / "00001001" / "visit.json")
    parts = {s: str(tmp_path / "work" / "00001001" / "partitions" / f"{s}.parquet") for s in ("R22_S11", "R22_S12")}
    write_estimates(estimates / "00001001.tsv", estimate_visit(visit, parts, ResourceModel.read(), 1e5, 0.15, 0.4))
    reused = _forecast(*args, "--json", "--estimates-dir", str(estimates))
    assert reused.returncode == 0, reused.stderr
    again = json.loads(reused.stdout)
    assert again["dc2flow"]["node_hours_bundles"] == pytest.approx(ours["node_hours_bundles"])
    assert again["per_visit_runtime_source"]["parse_catalog"] == ["forecast.per_visit_job_s"]
    assert again["disk_gb"]["partitions"] is None
    # the run's camera (camera.description in --configfile) sizes the images
    small_e2v = tmp_path / "small_e2v.yaml"
    small_e2v.write_text(f"camera: {{description: {small_e2v_policy}}}\n")
    sized = _forecast(*args, "--json", "--estimates-dir", str(estimates), "--configfile", str(small_e2v))
    assert sized.returncode == 0, sized.stderr
    assert json.loads(sized.stdout)["disk_gb"]["images"] == pytest.approx(2 * 2880 * 5698 / 1e9)  # 2048 x 2002 x 4 B + 3 header blocks

    text = (estimates / "00001001.tsv").read_text().splitlines()
    # a visit's shared memory (atmospheric screens, visit_shared_gb) is packed as dc2flow bundle packs
    # it, once per visit in a bundle: 19 GB of screens leave no room for these sensors on the test
    # cluster's 20 GB node, and 19.5 GB none at all
    assert text[0].split("\t")[-1] == "visit_shared_gb"
    for shared, says in (("19.0", "needs 20.05 GB (mem_gb 0.55 + visit overhead 19.5)"), ("19.5", "visit 1001's renders share 19.5 GB")):
        (estimates / "00001001.tsv").write_text("\n".join([text[0]] + [r.rsplit("\t", 1)[0] + "\t" + shared
                                                                        for r in text[1:]]) + "\n")
        screens = _forecast(*args, "--estimates-dir", str(estimates))
        assert screens.returncode == 1 and "Traceback" not in screens.stderr, screens.stderr
        assert says in screens.stderr, screens.stderr
    (estimates / "00001001.tsv").write_text("\n".join([text[0], text[1].replace("\t0.55\t", "\tnan\t")] + text[2:]) + "\n")
    bad = _forecast(*args, "--estimates-dir", str(estimates))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("dc2flow forecast: error: ") and "00001001.tsv:2: column 'mem_gb'" in bad.stderr


def test_cli_forecast_without_catalogs_is_an_error():
    proc = _forecast("--profile", "profiles/ci-slurm")
    assert proc.returncode == 1 and "config key 'catalogs'" in proc.stderr
