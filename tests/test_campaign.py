"""The campaign view: visits from headers, file names, and what each render job requests."""

import pytest

from conftest import SHARED, needs_shared
from dc2flow import campaign
from dc2flow.errors import ConfigError


def test_image_and_truth_names():
    assert campaign.image_name(449053, "r", "R22_S11") == "eimage_00449053-0-r-R22_S11-det094.fits"
    assert campaign.truth_name(7, "y", "R01_S00") == "centroid_00000007-0-y-R01_S00-det000.txt.gz"


@needs_shared()
def test_visits_read_headers_only(tmp_path):
    cat = tmp_path / "copy.txt"
    cat.write_text((SHARED / "example_instance_catalog.txt").read_text())
    visits = campaign.visits([str(SHARED / "phosim_cat_466749.txt"), str(SHARED / "example_instance_catalog.txt")])
    assert {v: e.band for v, e in visits.items()} == {398414: "r", 466749: "u"}   # includes missing: fine
    with pytest.raises(ConfigError, match="visit 398414 is also in"):
        campaign.visits([str(SHARED / "example_instance_catalog.txt"), str(cat)])


def _plan(tmp_path):
    from dc2flow.packing import Job, Node, Plan, write_plan

    jobs = {(v, s): Job(v, s, 1.0 + i, 90.0) for v in (1, 2) for i, s in enumerate(("R22_S11", "R22_S12"))}
    plan = Plan(((jobs[1, "R22_S11"], jobs[1, "R22_S12"], jobs[2, "R22_S11"]), (jobs[2, "R22_S12"],)), Node(16.0, 4, 0.5))
    write_plan(tmp_path / "plan.csv", plan)
    return tmp_path / "plan.csv"


def test_render_requests_carry_one_overhead_per_visit_and_bundle(tmp_path):
    path = _plan(tmp_path)
    assert path.read_text().splitlines()[:2] == ["bundle,visit,snap,det_name,mem_mb,runtime_min,bundle_mem_mb",
                                                 "b0000,1,0,R22_S11,1536,2,5120"]   # the plan is the whole record
    req = campaign.render_requests(str(path))
    assert req[(1, 0, "R22_S11")] == campaign.RenderRequest("b0000", 1, 0, "R22_S11", 1536, 2, 1536 + 2048 + 1536)
    assert req[(1, 0, "R22_S12")].mem_mb == 2048                              # second of visit 1: no overhead
    assert req[(2, 0, "R22_S11")].mem_mb == 1536 and req[(2, 0, "R22_S12")].mem_mb == int(2.5 * 1024)
    assert req[(2, 0, "R22_S12")].bundle_mem_mb == int(2.5 * 1024)
    assert campaign.bundle_members(str(path)) == {
        "b0000": [(1, 0, "R22_S11"), (1, 0, "R22_S12"), (2, 0, "R22_S11")], "b0001": [(2, 0, "R22_S12")]}


def test_two_snaps_of_a_visit_pay_the_overhead_each_and_keep_their_rows(tmp_path):
    from dc2flow.packing import Job, Node, Plan, plan_bundles, write_plan

    jobs = [Job(1, "R22_S11", 1.0, 60.0, snap=s) for s in (0, 1)]
    plan = Plan((tuple(jobs),), Node(16.0, 4, 0.5))
    assert plan.bundle_memory_gb(0) == 1.0 + 1.0 + 2 * 0.5       # each snap builds its own visit state
    write_plan(tmp_path / "plan.csv", plan)
    req = campaign.render_requests(tmp_path / "plan.csv")
    assert {k: r.mem_mb for k, r in req.items()} == {(1, 0, "R22_S11"): 1536, (1, 1, "R22_S11"): 1536}
    new, _ = plan_bundles(jobs, Node(16.0, 4, 0.5))
    assert sorted((r.visit, r.snap) for r in new.rows()) == [(1, 0), (1, 1)]


def test_plan_without_the_snap_column_reads_as_snap_0(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("bundle,visit,det_name,mem_mb,runtime_min,bundle_mem_mb\nb0000,7,R22_S11,1024,1,1024\n")
    assert campaign.render_requests(old) == {(7, 0, "R22_S11"): campaign.RenderRequest("b0000", 7, 0, "R22_S11", 1024, 1, 1024)}


def test_exposure_keys_map_both_ways():
    assert campaign.exposure_key(449053) == campaign.Exposure(449053, 0).key == "00449053"   # snap 0: as ever
    assert campaign.exposure_key(449053, 1) == campaign.Exposure(449053, 1).key == "00449053-1"
    assert campaign.exposure_key(7, 12) == "00000007-12"
    for visit, snap in ((449053, 0), (449053, 1), (0, 3), (99999999, 10)):
        assert campaign.parse_exposure(campaign.exposure_key(visit, snap)) == (visit, snap)
    assert sorted([campaign.Exposure(2, 0), campaign.Exposure(1, 1), campaign.Exposure(1, 0)]) == [(1, 0), (1, 1), (2, 0)]


@pytest.mark.parametrize("key", ["449053", "00449053-0", "00449053-01", "00449053_1", "00449053-", "x0449053", "004490531"])
def test_a_bad_exposure_key_is_refused(key):
    with pytest.raises(ConfigError, match="is not an exposure key") as info:
        campaign.parse_exposure(key)
    assert info.value.key == "exposure" and "00449053-1" in str(info.value)


def test_exposure_key_refuses_what_has_no_key():
    for visit, snap in ((10**8, 0), (-1, 0), (1, -1)):
        with pytest.raises(ConfigError, match="is not a visit of at most 8 digits"):
            campaign.exposure_key(visit, snap)


def test_exposure_key_regex_keeps_snap_0_and_snap_1_apart():
    import re

    keys = re.compile(campaign.EXPOSURE_KEY_REGEX)
    assert all(keys.fullmatch(k) for k in ("00449053", "00449053-1", "00449053-10"))
    assert not any(keys.fullmatch(k) for k in ("00449053-0", "00449053-01", "0044905", "00449053-"))
    # the partition index of snap 1 is not taken for snap 0's, nor the reverse
    pattern = re.compile(rf"out/partitions/(?P<visit>{campaign.EXPOSURE_KEY_REGEX})/index\.tsv")
    assert pattern.fullmatch("out/partitions/00449053-1/index.tsv")["visit"] == "00449053-1"
    assert pattern.fullmatch("out/partitions/00449053/index.tsv")["visit"] == "00449053"


def test_render_benchmark_records_are_read_per_exposure():
    """calibrate and the resources figure find a render's benchmark by its exposure key's folder."""
    from dc2flow.io import render_benchmark_key

    assert render_benchmark_key("out/benchmarks/render/00449053/r-R22_S11-det094.tsv") == (449053, 0, "R22_S11")
    assert render_benchmark_key("out/benchmarks/render/00449053-1/r-R22_S11-det094.tsv") == (449053, 1, "R22_S11")
    for other in ("out/benchmarks/render/00449053-0/r-R22_S11-det094.tsv",
                  "out/benchmarks/render/00449053/r-R22_S11-det094.peak.json", "out/logs/render/00449053/x.tsv"):
        assert render_benchmark_key(other) is None, other


def test_run_snaps():
    assert campaign.run_snaps({"snaps": [1, 0]}) == (0, 1) and campaign.run_snaps({}) == (0,)
    assert campaign.run_snaps({"snaps": ["1"]}) == (1,)
    for snaps, message in (([0, 0], "distinct"), ([-1], "distinct integers >= 0"), (["a"], "not an integer")):
        with pytest.raises(ConfigError, match=message):
            campaign.run_snaps({"snaps": snaps})
    with pytest.raises(ConfigError, match="instance catalogs are snap 0"):
        campaign.run_snaps({"snaps": [0, 1], "catalogs": ["a.txt"]})


def test_plan_lookup_is_built_once_per_plan_file(tmp_path):
    import os

    path = _plan(tmp_path)
    first = campaign.plan_lookup(path)
    assert campaign.plan_lookup(str(path)) is first                           # Snakemake asks once per job
    text = path.read_text().replace("b0001,2,0,R22_S12,2560,2,2560", "b0001,2,0,R22_S12,2000,2,2000")
    path.write_text(text)
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1_000_000))
    assert campaign.plan_lookup(path).requests[(2, 0, "R22_S12")].mem_mb == 2000  # a new plan is read again


def test_manifest(tmp_path):
    import numpy as np
    from astropy.io import fits

    image = tmp_path / "a.fits"
    fits.PrimaryHDU(np.zeros((4, 4), np.float32)).writeto(image, checksum=True)
    campaign.write_manifest([str(image)], str(tmp_path / "m.tsv"))
    header, row = (tmp_path / "m.tsv").read_text().splitlines()
    assert header == "image\tbytes\tdatasum" and row.split("\t")[1] == str(image.stat().st_size)
