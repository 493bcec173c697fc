"""The campaign view: visits from headers, file names, and what each render job requests."""

import pytest

from conftest import SHARED, needs_shared
from dc2flow import campaign
from dc2flow.errors import ConfigError
from dc2flow.estimate import write_estimates


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
    (tmp_path / "est").mkdir()
    for visit in (1, 2):
        write_estimates(tmp_path / "est" / f"{visit:08d}.tsv",
                        [{"visit": visit, "sensor": s, "mem_gb": 1.0 + i, "runtime_s": 90.0,
                          **dict.fromkeys(("image_mpix", "n_objects", "n_knots", "phot_gphotons", "fft_mpix",
                                           "max_fft_mpix", "max_phot_gphotons"), 0.0)}
                         for i, s in enumerate(("R22_S11", "R22_S12"))])
    plan = tmp_path / "plan.csv"
    plan.write_text("bundle,visit,sensor\nb0000,1,R22_S11\nb0000,1,R22_S12\nb0000,2,R22_S11\nb0001,2,R22_S12\n")
    return plan


def test_render_requests_carry_one_overhead_per_visit_and_bundle(tmp_path):
    req = campaign.render_requests(str(_plan(tmp_path)), str(tmp_path / "est"), visit_overhead_gb=0.5)
    assert req[(1, "R22_S11")] == campaign.RenderRequest("b0000", 1536, 2, 1536 + 2048 + 1536)  # 1.0 + 0.5 overhead
    assert req[(1, "R22_S12")].mem_mb == 2048                                 # second of visit 1: no overhead
    assert req[(2, "R22_S11")].mem_mb == 1536 and req[(2, "R22_S12")].mem_mb == int(2.5 * 1024)
    assert req[(2, "R22_S12")].bundle_mem_mb == int(2.5 * 1024)
    assert campaign.bundle_members(str(tmp_path / "plan.csv")) == {
        "b0000": [(1, "R22_S11"), (1, "R22_S12"), (2, "R22_S11")], "b0001": [(2, "R22_S12")]}


def test_manifest(tmp_path):
    import numpy as np
    from astropy.io import fits

    image = tmp_path / "a.fits"
    fits.PrimaryHDU(np.zeros((4, 4), np.float32)).writeto(image, checksum=True)
    campaign.write_manifest([str(image)], str(tmp_path / "m.tsv"))
    header, row = (tmp_path / "m.tsv").read_text().splitlines()
    assert header == "image\tbytes\tdatasum" and row.split("\t")[1] == str(image.stat().st_size)
