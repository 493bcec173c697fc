"""The eyeball viewer: safety of every request (Flask test client) and a real headless browser session."""

from __future__ import annotations

import gzip
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from astropy.io import fits

from conftest import REPO, env_with_venv, setup_failed
from dc2flow import registry
from dc2flow.viewer import create_app, resolve_image

NAME = "eimage_00001001-0-r-R22_S11-det094.fits"
REL = f"00001001/{NAME}"
CATEGORIES = ["artifact", "other"]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def root(tmp_path):
    """A tiny output root: one small eimage and its truth table, and a secret file beside the root."""
    out = tmp_path / "out"
    (out / "00001001").mkdir(parents=True)
    pixels = np.random.default_rng(1).normal(100.0, 10.0, (200, 180)).astype(np.float32)
    pixels[50:53, 60:63] += 5000.0
    fits.PrimaryHDU(pixels).writeto(out / REL, checksum=True)
    with gzip.open(out / "00001001" / NAME.replace("eimage_", "centroid_").replace(".fits", ".txt.gz"), "wt") as fh:
        fh.write("id\tobj_index\tobj_type\tra_deg\tdec_deg\tx\ty\tflux\tflux_drawn\tmethod\n")
        fh.write("s1\t0\tstar\t55.0\t-30.0\t62.0\t52.0\t45000.0\t45000.0\tfft\n")
    (tmp_path / "secret.fits").write_bytes(b"not for the web")
    return out


@pytest.fixture
def client(root, tmp_path):
    app = create_app(root, f"sqlite:///{tmp_path}/reg.sqlite", CATEGORIES, 50)   # 127.0.0.1:8765
    app.config["SERVER_NAME"] = "127.0.0.1:8765"   # the test client's default Host header
    return app.test_client()


def _token(client) -> str:
    page = client.get("/sensor", query_string={"path": REL})
    assert page.status_code == 200
    return re.search(r'name="token" value="([^"]+)"', page.text).group(1)


def test_page_image_and_stretches(client):
    first = client.get("/")
    assert first.status_code == 303 and "sensor?path=" in first.headers["Location"]
    page = client.get(first.headers["Location"])
    assert page.status_code == 200 and 'id="sensor-image"' in page.text
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    pngs = {}
    for stretch in ("zscale", "linear", "asinh"):
        for overlay in ("0", "1"):
            resp = client.get("/image.png", query_string={"path": REL, "stretch": stretch, "overlay": overlay})
            assert resp.status_code == 200 and resp.mimetype == "image/png" and resp.data[:8] == b"\x89PNG\r\n\x1a\n"
            pngs[stretch, overlay] = resp.data
    assert len(set(pngs.values())) == 6


@pytest.mark.parametrize("path,code", [
    ("../secret.fits", 403),                                  # '..'
    ("00001001/../../secret.fits", 403),
    ("/etc/passwd", 403),                                     # absolute
    ("00001001/eimage_00001001-0-r-R22_S12-det095.fits", 404),  # well formed, absent
    ("00001001/centroid_00001001-0-r-R22_S11-det094.txt.gz", 400),  # not an image
    ("", 400),
    ("00001001/eimage_x.fits; rm -rf /", 400),
])
def test_paths_outside_the_images_are_refused(client, path, code):
    for url in ("/image.png", "/sensor"):
        assert client.get(url, query_string={"path": path}).status_code == code, (url, path)


def test_symlink_escaping_the_root_is_refused(client, root, tmp_path):
    (root / "00001002").mkdir()
    link = root / "00001002" / "eimage_00001002-0-r-R22_S11-det094.fits"
    link.symlink_to(tmp_path / "secret.fits")
    resp = client.get("/image.png", query_string={"path": "00001002/" + link.name})
    assert resp.status_code == 403 and b"not for the web" not in resp.data
    with pytest.raises(registry.RegistryError, match="outside the output root"):
        resolve_image(root, "00001002/" + link.name)


def test_bad_view_options_are_refused(client):
    assert client.get("/image.png", query_string={"path": REL, "stretch": "log"}).status_code == 400
    assert client.get("/sensor", query_string={"path": REL, "overlay": "2"}).status_code == 400


def test_problem_reports_are_validated_and_stored(client, tmp_path):
    token = _token(client)
    good = {"token": token, "visit": "1001", "det_name": "R22_S11", "category": "artifact", "comment": "a ghost"}
    assert client.post("/problems", data=good).status_code == 303
    for bad in ({"category": "nonsense"}, {"comment": "x" * 51}, {"visit": "10a"}, {"visit": "123456789"},
                {"det_name": "R22_S1"}, {"det_name": "../R22"}, {"extra": "1"}, {"snap": "-1"}, {"snap": "a"}):
        assert client.post("/problems", data={**good, **bad}).status_code == 400, bad
    assert client.post("/problems", data={**good, "snap": "1"}).status_code == 404   # no image of snap 1 here
    assert client.post("/problems", data={**good, "token": "forged"}).status_code == 403
    assert client.post("/problems", data=good, headers={"Origin": "http://evil.example"}).status_code == 403
    listing = client.get("/problems")
    assert listing.status_code == 200 and "a ghost" in listing.text
    _, found = registry.query(f"sqlite:///{tmp_path}/reg.sqlite", "problems")
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in found] == [(1001, 0, "R22_S11", "artifact", "a ghost")]
    assert client.post("/problems", data={**good, "snap": "0"}).status_code == 303   # the page's own field


def test_dns_rebinding_is_refused_by_the_host_check(client, root, tmp_path):
    token = _token(client)
    good = {"token": token, "visit": "1001", "det_name": "R22_S11", "category": "artifact", "comment": "a ghost"}
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "LOCALHOST:8765"):
        assert client.get("/sensor", query_string={"path": REL}, headers={"Host": host}).status_code == 200, host
    for host in ("evil.example:8765", "evil.example", "127.0.0.1:8766", "localhost", ""):
        assert client.get("/sensor", query_string={"path": REL}, headers={"Host": host}).status_code == 403, host
    # a rebound page: its own name as Host and as Origin, so the Origin check alone would pass
    rebound = {"Host": "evil.example:8765", "Origin": "http://evil.example:8765"}
    assert client.post("/problems", data=good, headers=rebound).status_code == 403
    assert client.get("/problems", headers=rebound).status_code == 403
    _, found = registry.query(f"sqlite:///{tmp_path}/reg.sqlite", "problems")
    assert found == []
    # a non-loopback --host: that name only
    app = create_app(root, f"sqlite:///{tmp_path}/reg2.sqlite", CATEGORIES, 50, host="192.0.2.10", port=9000,
                     allow_remote=True)
    other = app.test_client()
    assert other.get("/problems", headers={"Host": "192.0.2.10:9000"}).status_code == 200
    for host in ("localhost:9000", "127.0.0.1:9000", "evil.example:9000"):
        assert other.get("/problems", headers={"Host": host}).status_code == 403, host
    with pytest.raises(registry.RegistryError, match="every address"):
        create_app(root, f"sqlite:///{tmp_path}/reg3.sqlite", CATEGORIES, 50, host="0.0.0.0")


def test_comment_is_escaped_in_the_listing(client):
    token = _token(client)
    form = {"token": token, "visit": "1001", "det_name": "R22_S11", "category": "other", "comment": "<script>x</script>"}
    assert client.post("/problems", data=form).status_code == 303
    assert "<script>x</script>" not in client.get("/problems").text


# --- a real browser -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chromium():
    script = REPO / "scripts" / "install-chromium.sh"
    if not os.path.exists(CHROMIUM):
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            reason = f"{script.name} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
            setup_failed(reason)
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def viewer(registered_campaign, tmp_path_factory):
    """``dc2flow viewer`` serving the registered campaign, as a user starts it."""
    out = registered_campaign / "out"
    db = f"sqlite:///{tmp_path_factory.mktemp('viewer')}/reg.sqlite"
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dc2flow.cli", "viewer", str(out), "--db", db, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env_with_venv())
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base + "/problems", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"viewer did not start:\n{proc.stdout.read()}") from None
            time.sleep(0.2)
    yield base, db
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.slow
def test_browser_session(chromium, viewer, tmp_path):
    from playwright.sync_api import sync_playwright

    base, db = viewer
    loaded = "img => img.complete && img.naturalWidth > 0"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 1150})
        t0 = time.monotonic()
        page.goto(base + "/")
        image = page.locator("#sensor-image")
        page.wait_for_function(f"({loaded})(document.getElementById('sensor-image'))", timeout=60_000)
        print(f"viewer page with its image loaded in {time.monotonic() - t0:.2f} s")
        assert "visit 1001" in page.locator("#title").inner_text()
        src = image.get_attribute("src")
        before = page.request.get(base + src).body()
        if os.environ.get("DC2FLOW_SCREENSHOT"):
            page.screenshot(path=os.environ["DC2FLOW_SCREENSHOT"], full_page=True)

        page.click("#stretch-asinh")
        page.wait_for_url(re.compile(r"stretch=asinh"))
        page.wait_for_function(f"({loaded})(document.getElementById('sensor-image'))", timeout=60_000)
        src2 = image.get_attribute("src")
        assert "stretch=asinh" in src2 and src2 != src
        assert page.request.get(base + src2).body() != before

        title = page.locator("#title").inner_text()
        page.select_option("#category", "bad-psf")
        page.fill("#comment", "PSF looks doubled in the corner")
        page.click("#submit-problem")
        page.wait_for_url(re.compile(r"/problems$"))
        row = page.locator("#problems tr").nth(1).inner_text()
        assert "bad-psf" in row and "PSF looks doubled in the corner" in row and title.split(" · ")[2] in row   # visit · snap · det_name · band
        browser.close()
    _, found = registry.query(db, "problems")
    assert [(r[1], r[2], r[4], r[5]) for r in found] == [(1001, 0, "bad-psf", "PSF looks doubled in the corner")]


@pytest.mark.parametrize("host", ["0", "0.0", "00", "0x0", "0.0.0.0", "::", "[::]", "::ffff:0.0.0.0"])
def test_every_spelling_of_the_unspecified_address_is_refused(root, tmp_path, host):
    for allow_remote in (False, True):
        with pytest.raises(registry.RegistryError, match="every address"):
            create_app(root, f"sqlite:///{tmp_path}/reg.sqlite", CATEGORIES, 50, host=host, allow_remote=allow_remote)


def test_only_loopback_without_opt_in(root, tmp_path):
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.1"):
        app = create_app(root, f"sqlite:///{tmp_path}/reg.sqlite", CATEGORIES, 50, host=host, port=9000)
        assert app.test_client().get("/problems", headers={"Host": "localhost:9000"}).status_code == 200, host
    with pytest.raises(registry.RegistryError, match="non-loopback"):
        create_app(root, f"sqlite:///{tmp_path}/reg.sqlite", CATEGORIES, 50, host="192.0.2.10")


@pytest.mark.parametrize("field,value", [("det_name", "R22_S11\n"), ("visit", "\u0661\u0660\u0660\u0661"),
                                         ("visit", "1001\n")])
def test_form_fields_are_matched_whole_and_ascii(client, tmp_path, field, value):
    good = {"token": _token(client), "visit": "1001", "det_name": "R22_S11", "category": "artifact", "comment": "x"}
    assert client.post("/problems", data={**good, field: value}).status_code == 400
    _, found = registry.query(f"sqlite:///{tmp_path}/reg.sqlite", "problems")
    assert found == []


def test_problem_for_an_absent_image_is_refused(client, tmp_path):
    good = {"token": _token(client), "visit": "1001", "det_name": "R22_S11", "category": "artifact", "comment": "x"}
    for bad in ({"visit": "1002"}, {"det_name": "R01_S00"}):
        assert client.post("/problems", data={**good, **bad}).status_code == 404
    assert client.post("/problems", data=good).status_code == 303
    _, found = registry.query(f"sqlite:///{tmp_path}/reg.sqlite", "problems")
    assert len(found) == 1


def test_unreadable_images_answer_4xx(client, root, tmp_path):
    d = root / "00001001"
    (d / "eimage_00001001-0-r-R22_S12-det095.fits").write_bytes(b"")
    (d / "eimage_00001001-0-r-R22_S20-det096.fits").write_bytes((d / NAME).read_bytes()[:4000])
    (root / "registry.sqlite").write_bytes(b"SQLite format 3\x00" + bytes(100))
    (d / "eimage_00001001-0-r-R22_S21-det097.fits").symlink_to(root / "registry.sqlite")
    for det in ("R22_S12-det095", "R22_S20-det096", "R22_S21-det097"):
        resp = client.get("/image.png", query_string={"path": f"00001001/eimage_00001001-0-r-{det}.fits"})
        assert 400 <= resp.status_code < 500, det
        assert "Traceback" not in resp.text


def test_only_servable_files_are_listed(client, root, tmp_path):
    d = root / "00001001"
    (d / "eimage_00001001-0-r-R22_S12-det095.fits").symlink_to(tmp_path / "secret.fits")
    os.mkfifo(d / "eimage_00001001-0-r-R22_S20-det096.fits")
    (d / "eimage_00001001-0-r-R22_S21-det097.fits").symlink_to(tmp_path / "nowhere.fits")
    page = client.get("/sensor", query_string={"path": REL})
    assert "1 images under" in page.text
    for _ in range(10):
        assert REL in client.get("/").headers["Location"].replace("%2F", "/")


def test_cli_refuses_a_remote_host_unless_allow_remote(root, tmp_path):
    """The command line's opt-in: without --allow-remote a non-loopback --host is refused with a
    message naming the flag; with it the check passes and the server tries to bind that address
    (192.0.2.10 is TEST-NET-1, on no interface here, so the bind itself fails)."""
    import subprocess
    import sys

    base = [sys.executable, "-m", "dc2flow.cli", "viewer", str(root), "--db", f"sqlite:///{tmp_path}/r.sqlite",
            "--host", "192.0.2.10", "--port", "8799"]
    refused = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "--allow-remote" in refused.stderr, refused.stderr
    tried = subprocess.run([*base, "--allow-remote"], capture_output=True, text=True, timeout=60)
    assert "non-loopback" not in tried.stderr and "assign requested address" in tried.stderr, tried.stderr[-2000:]
