
import pytest

from dc2flow import camera
from dc2flow.errors import CameraDescriptionError, CameraError
from conftest import OBS_LSST, PERTURBED_DET, PERTURBED_OFFSET_MM, PERTURBED_YAW_DEG, needs_shared


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
    assert lines[0] == "det_num,det_name,vendor,nx,ny,x_mm,y_mm,yaw_deg,refpos_x,refpos_y" and len(lines) == 190
    assert lines[95] == "94,R22_S11,E2V,4096,4004,0.000,0.000,0,2047.5,2001.5"


def _yaml(path):
    import yaml

    with open(path) as fh:
        return yaml.safe_load(fh)


@needs_shared()
def test_packaged_tables_are_what_the_script_derives_from_obs_lsst(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "scripts/derive_camera_table.py"), str(OBS_LSST),
                          "--out", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for name in ("lsstcam_sensors.csv", "lsstcam_amplifiers.csv", "lsstcam_camera.json"):
        assert (tmp_path / name).read_text() == (root / "workflow/dc2flow/data" / name).read_text(), name


@needs_shared()
def test_sensor_table_against_the_obs_lsst_files():
    """Each sensor's centre, yaw, size, reference pixel and corners, read straight from obs_lsst's
    YAML here (independently of dc2flow.camera_description)."""
    rafts = _yaml(OBS_LSST / "rafts.yaml")["rafts"]
    header = _yaml(OBS_LSST / "cameraHeader.yaml")
    seen = 0
    for raft_file in sorted((OBS_LSST / "lsstCam").glob("R*.yaml")):
        name = raft_file.stem
        doc = _yaml(raft_file)[name]
        vendor = doc["detectorType"]
        ccd = header[f"CCD_{vendor}"]
        (x0, y0), (x1, y1) = ccd["bbox"]
        for slot, layout in header[f"RAFT_{vendor}"]["ccds"].items():
            s = camera.get_sensor(f"{name}_{slot}")
            assert s.det_num == rafts[name]["id0"] + layout["id"]
            assert s.vendor == vendor and s.serial == doc["ccdSerials"][slot]
            assert (s.nx, s.ny) == (x1 - x0 + 1, y1 - y0 + 1)
            assert s.refpos == tuple(ccd["refpos"])
            # e2v's reference pixel is the centre of its grid, ITL's one pixel beyond it
            step = 1.0 if vendor == "ITL" else 0.0
            assert s.refpos == (s.centre_pixel[0] + step, s.centre_pixel[1] + step)
            # science rafts have no yaw: the centre is the raft's plus the slot's offset
            assert rafts[name].get("yaw", 0.0) == 0.0 and s.yaw_deg == 0.0
            dx, dy = doc["geometryWithinRaft"][slot]["offset"]
            assert (s.x_mm, s.y_mm) == pytest.approx((rafts[name]["offset"][0] + layout["offset"][0] + dx,
                                                      rafts[name]["offset"][1] + layout["offset"][1] + dy))
            corners = s.corners_mm()   # outer pixel edges, from the reference pixel's offset
            cx, cy = s.x_mm - step * 0.01, s.y_mm - step * 0.01
            assert s.centre_mm == pytest.approx((cx, cy))
            assert corners[0] == pytest.approx([cx - s.nx * 0.005, cy - s.ny * 0.005])
            assert corners[2] == pytest.approx([cx + s.nx * 0.005, cy + s.ny * 0.005])
            seen += 1
    assert seen == 189


def test_pixel_axes_are_dm_s():
    s = camera.get_sensor("R22_S11")
    assert s.pixel_to_focal_plane(2047.5, 2001.5) == pytest.approx((0.0, 0.0))
    assert s.pixel_to_focal_plane(2147.5, 2001.5) == pytest.approx((1.0, 0.0))   # +x is focal-plane +x
    x, y = s.focal_plane_to_pixel(*s.pixel_to_focal_plane([0.0, 4095.0], [0.0, 4003.0]))
    assert x == pytest.approx([0.0, 4095.0]) and y == pytest.approx([0.0, 4003.0])
    yawed = camera.Sensor("R22_S11", 94, "E2V", 4096, 4004, 0.0, 0.0, yaw_deg=90.0)
    assert yawed.pixel_to_focal_plane(2147.5, 2001.5) == pytest.approx((0.0, 1.0))
    assert yawed.focal_plane_to_pixel(0.0, 1.0) == pytest.approx((2147.5, 2001.5))


def test_amplifiers_and_plate_scale():
    amps = camera.LSSTCAM.amplifiers["R22_S11"]
    assert [a.hdu for a in amps] == list(range(1, 17)) and amps[0].amp == "C10" and amps[-1].amp == "C00"
    assert amps[0].gain == pytest.approx(1.4, abs=0.3) and 3 < amps[0].read_noise < 12
    assert camera.PLATE_SCALE_ARCSEC_PER_MM == pytest.approx(20.005867576692737)
    assert camera.PIXEL_SCALE_ARCSEC == pytest.approx(0.20005867576692737)
    # the radial polynomial: a few arcsec short of the plate scale at the field edge
    edge = camera.LSSTCAM.field_angle_arcsec(300.0) - 300.0 * camera.PLATE_SCALE_ARCSEC_PER_MM
    assert -6.0 < edge < -3.0


def test_another_description_in_config(perturbed_policy, small_e2v_policy, tmp_path):
    import shutil

    cam = camera.load_camera(str(perturbed_policy))
    s = cam.sensor(PERTURBED_DET)
    assert (s.x_mm, s.y_mm, s.yaw_deg) == pytest.approx((*PERTURBED_OFFSET_MM, PERTURBED_YAW_DEG))
    assert camera.camera_for({"camera": {"description": str(perturbed_policy)}}) is cam
    # names and detector numbers are the description's, in LSSTCam's order
    assert cam.det_names == camera.DET_NAMES and s.det_num == 94
    assert cam.sensor("R22_S12") == camera.get_sensor("R22_S12")
    from dc2flow.cli import main

    assert main(["focal-plane", "--camera-description", str(perturbed_policy), "--out", str(tmp_path / "fp.csv")]) == 0
    assert (tmp_path / "fp.csv").read_text().splitlines()[95] == "94,R22_S11,E2V,4096,4004,1.600,-0.960,0.02,2047.5,2001.5"
    small = camera.load_camera(str(small_e2v_policy)).sensor("R22_S11")
    assert (small.nx, small.ny, small.refpos) == (2048, 2002, (1023.5, 1000.5))
    assert small.centre_mm == pytest.approx((0.0, 0.0))
    broken = tmp_path / "policy"
    shutil.copytree(perturbed_policy, broken)
    (broken / "rafts.yaml").write_text("rafts:\n  R22: {id0: 90}\n")
    with pytest.raises(CameraDescriptionError, match="rafts.yaml: rafts: no 'R01'; give raft R01 an offset and id0"):
        camera.load_camera(str(broken) + "/")
