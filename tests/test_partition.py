"""Partitions: every object goes to each sensor its stamp touches, all files or none."""

import numpy as np
import pandas as pd
import pytest

from conftest import pixel_to_sky, run_stages
from dc2flow import camera
from dc2flow.errors import RenderError
from dc2flow.partition import partition_visit, read_partition
from dc2flow.synthetic import make_catalog

RA0, DEC0, ROT = 120.0, 10.0, 15.0


@pytest.fixture(scope="module")
def edge_scene(tmp_path_factory):
    """A bright star in the 1.29 mm gap between R22_S11 and R22_S12, a star just inside S11's edge,
    a faint one in the middle and one far away; rendered on S11, S12 and R01_S00."""
    tmp = tmp_path_factory.mktemp("edge")
    s11 = camera.get_sensor("R22_S11")
    x = np.array([s11.nx + 60.0, s11.nx - 3.0, 2000.0, 2000.0])   # the gap is 129 px wide
    y = np.array([2000.0, 1500.0, 2000.0, -60000.0])
    ra, dec = pixel_to_sky("R22_S11", RA0, DEC0, ROT, x, y, band="i")
    cat = make_catalog(outdir=tmp / "cat", visit=5, ra_deg=RA0, dec_deg=DEC0, band="i", seed=9, rotskypos_deg=ROT,
                       radius_deg=0.05, star_density=0.0, galaxy_density=0.0,
                       bright_stars=list(zip(ra, dec, [10.0, 17.0, 22.0, 17.0])))
    return run_stages(tmp / "run", cat, ["R22_S11", "R22_S12", "R01_S00"])


def test_objects_go_to_every_sensor_their_stamp_touches(edge_scene):
    p11 = read_partition(edge_scene["partitions"]["R22_S11"]).set_index("obj_index")
    p12 = read_partition(edge_scene["partitions"]["R22_S12"]).set_index("obj_index")
    assert sorted(p11.index) == [0, 1, 2]
    assert sorted(p12.index) == [0]                   # only the bright gap star reaches S12
    assert read_partition(edge_scene["partitions"]["R01_S00"]).empty
    radius = p11["stamp_radius_px"]
    assert radius[0] > 69 and radius[1] < 126 - 3   # reaches S12 / does not: the rule, not luck
    assert radius[0] > radius[1] > 8 and radius[2] >= 8
    assert p12.loc[0, "x"] == pytest.approx(60.0 - 129.0, abs=3e-3)


def test_gap_star_light_falls_on_both_images(edge_scene):
    t11 = pd.read_csv(edge_scene["truth"]["R22_S11"], sep="\t").set_index("obj_index")
    t12 = pd.read_csv(edge_scene["truth"]["R22_S12"], sep="\t").set_index("obj_index")
    on_11, on_12, total = t11.loc[0, "flux_drawn"], t12.loc[0, "flux_drawn"], t11.loc[0, "flux"]
    assert on_11 > 0 and on_12 > 0 and on_11 + on_12 < 0.5 * total   # most of it falls in the gap
    assert on_11 / on_12 > 1.0                                         # S11 is nearer (60 vs 69 px)


def test_positions_match_the_wcs(edge_scene):
    p11 = read_partition(edge_scene["partitions"]["R22_S11"]).set_index("obj_index")
    # catalogs carry RA/Dec to 1e-7 deg (0.002 px)
    assert p11.loc[1, "x"] == pytest.approx(4096 - 3.0, abs=3e-3) and p11.loc[1, "y"] == pytest.approx(1500.0, abs=3e-3)


def test_all_or_nothing(edge_scene, tmp_path):
    outputs = {"R22_S11": str(tmp_path / "a.parquet"), "R22_S12": str(tmp_path / "b.parquet")}
    bad = tmp_path / "objects.parquet"
    bad.write_bytes(b"garbage")
    with pytest.raises(RenderError, match="objects.parquet: cannot read the object table"):
        partition_visit(edge_scene["visit"], bad, outputs, edge_scene["options"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["objects.parquet"]
