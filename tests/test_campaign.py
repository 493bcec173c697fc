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
    assert path.read_text().splitlines()[:2] == ["bundle,visit,det_name,mem_mb,runtime_min,bundle_mem_mb",
                                                 "b0000,1,R22_S11,1536,2,5120"]   # the plan is the whole record
    req = campaign.render_requests(str(path))
    assert req[(1, "R22_S11")] == campaign.RenderRequest("b0000", 1, "R22_S11", 1536, 2, 1536 + 2048 + 1536)
    assert req[(1, "R22_S12")].mem_mb == 2048                                 # second of visit 1: no overhead
    assert req[(2, "R22_S11")].mem_mb == 1536 and req[(2, "R22_S12")].mem_mb == int(2.5 * 1024)
    assert req[(2, "R22_S12")].bundle_mem_mb == int(2.5 * 1024)
    assert campaign.bundle_members(str(path)) == {
        "b0000": [(1, "R22_S11"), (1, "R22_S12"), (2, "R22_S11")], "b0001": [(2, "R22_S12")]}


def test_plan_lookup_is_built_once_per_plan_file(tmp_path):
    import os

    path = _plan(tmp_path)
    first = campaign.plan_lookup(path)
    assert campaign.plan_lookup(str(path)) is first                           # Snakemake asks once per job
    text = path.read_text().replace("b0001,2,R22_S12,2560,2,2560", "b0001,2,R22_S12,2000,2,2000")
    path.write_text(text)
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1_000_000))
    assert campaign.plan_lookup(path).requests[(2, "R22_S12")].mem_mb == 2000  # a new plan is read again


def test_manifest(tmp_path):
    import numpy as np
    from astropy.io import fits

    image = tmp_path / "a.fits"
    fits.PrimaryHDU(np.zeros((4, 4), np.float32)).writeto(image, checksum=True)
    campaign.write_manifest([str(image)], str(tmp_path / "m.tsv"))
    header, row = (tmp_path / "m.tsv").read_text().splitlines()
    assert header == "image\tbytes\tdatasum" and row.split("\t")[1] == str(image.stat().st_size)
