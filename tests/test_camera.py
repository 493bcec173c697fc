import math

import numpy as np
import pytest

from dc2flow import camera
from dc2flow.errors import CameraError
from conftest import pixel_to_sky


def test_189_sensors_in_lsstcam_order():
    assert len(camera.SENSORS) == camera.N_SCIENCE_SENSORS == 189
    assert [s.det_num for s in camera.SENSORS] == list(range(189))
    assert camera.get_sensor("R01_S00").det_num == 0
    assert camera.get_sensor("R22_S11").det_num == 94
    assert camera.get_sensor("R43_S22").det_num == 188
    rafts = sorted({s.raft for s in camera.SENSORS})
    assert len(rafts) == 21 and not {"R00", "R04", "R40", "R44"} & set(rafts)
    assert list(camera.DET_NAMES) == sorted(camera.DET_NAMES)  # name order is detector order


def test_centres_follow_the_pitch_formula():
    for s in camera.SENSORS:
        i, j, k, l = (int(c) for c in s.det_name[1:3] + s.det_name[5:7])
        assert s.x_mm == pytest.approx((j - 2) * 127 + (l - 1) * 42.25)
        assert s.y_mm == pytest.approx((i - 2) * 127 + (k - 1) * 42.25)
    assert (camera.get_sensor("R01_S00").x_mm, camera.get_sensor("R01_S00").y_mm) == (-169.25, -296.25)
    assert (camera.get_sensor("R43_S22").x_mm, camera.get_sensor("R43_S22").y_mm) == (169.25, 296.25)


def test_sensor_sizes_by_vendor():
    itl = {s.raft for s in camera.SENSORS if s.vendor == "ITL"}
    assert itl == {"R01", "R02", "R03", "R10", "R20", "R41", "R42", "R43"}
    for s in camera.SENSORS:
        assert (s.nx, s.ny) == ((4072, 4000) if s.vendor == "ITL" else (4096, 4004))


@pytest.mark.parametrize("bad", ["R00_S11", "R22_S33", "r22_s11", 189, -1, True])
def test_unknown_sensor(bad):
    with pytest.raises(CameraError, match="unknown LSSTCam science sensor"):
        camera.get_sensor(bad)


def test_focal_plane_csv():
    lines = camera.focal_plane_csv().splitlines()
    assert lines[0] == "det_num,det_name,vendor,nx,ny,x_mm,y_mm" and len(lines) == 190
    assert lines[95] == "94,R22_S11,E2V,4096,4004,0.00,0.00"


def test_centre_of_r22_s11_is_the_boresight():
    ra, dec = pixel_to_sky("R22_S11", 60.5, -38.2, 131.2, *camera.get_sensor("R22_S11").centre_pixel)
    assert ra[0] == pytest.approx(60.5, abs=1e-9) and dec[0] == pytest.approx(-38.2, abs=1e-9)


@pytest.mark.parametrize("det_name,ra0,dec0,rot", [("R22_S11", 10.0, 0.0, 0.0), ("R01_S00", 359.9, -60.0, 73.0),
                                                   ("R43_S22", 200.0, 85.0, 250.0)])
def test_pixel_sky_round_trip(det_name, ra0, dec0, rot):
    """astropy's reading of our WCS cards and our own projection agree to 1e-6 px."""
    s = camera.get_sensor(det_name)
    x = np.array([1.0, s.nx, 0.5 * s.nx, 100.0])
    y = np.array([1.0, s.ny, 0.5 * s.ny, 3000.0])
    ra, dec = pixel_to_sky(det_name, ra0, dec0, rot, x, y)
    x_mm, y_mm, front = camera.sky_to_focal_plane(ra, dec, ra0, dec0, rot)
    xb, yb = s.focal_plane_to_pixel(x_mm, y_mm)
    assert front.all()
    np.testing.assert_allclose(xb, x, atol=1e-6)
    np.testing.assert_allclose(yb, y, atol=1e-6)


def test_rotskypos_convention():
    """At rotskypos 0 North is +y and East is -x; at 90, North is -x... (+y points East)."""
    s = camera.get_sensor("R22_S11")
    cx, cy = s.centre_pixel
    ra, dec = pixel_to_sky("R22_S11", 30.0, 0.0, 0.0, [cx, cx - 100], [cy + 100, cy])
    assert dec[0] > 0 and abs(ra[0] - 30.0) < 1e-9      # +y is North
    assert ra[1] > 30.0 and abs(dec[1]) < 1e-9          # -x is East
    ra, dec = pixel_to_sky("R22_S11", 30.0, 0.0, 90.0, [cx], [cy + 100])
    assert ra[0] > 30.0 and abs(dec[0]) < 1e-9          # +y points East
    assert math.isclose(3600 * (ra[0] - 30.0), 100 * camera.PIXEL_SCALE_ARCSEC, rel_tol=1e-6)


def test_galsim_wcs_matches_cards():
    import galsim

    s = camera.get_sensor("R10_S22")
    wcs = camera.galsim_wcs(s, 45.0, -20.0, 33.0)
    ra, dec = pixel_to_sky("R10_S22", 45.0, -20.0, 33.0, 123.0, 456.0)
    world = wcs.toWorld(galsim.PositionD(123.0, 456.0))
    assert world.ra.deg == pytest.approx(ra[0], abs=1e-9) and world.dec.deg == pytest.approx(dec[0], abs=1e-9)


def test_points_behind_the_focal_plane_are_flagged():
    _, _, front = camera.sky_to_focal_plane([0.0, 180.0], [0.0, 0.0], 0.0, 0.0, 0.0)
    assert front.tolist() == [True, False]
