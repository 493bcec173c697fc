import pickle

import pytest

from dc2flow.errors import (BundlingError, CameraDescriptionError, CameraError, CampaignError, CatalogError, ConfigError, Dc2flowError,
                            ForecastError, RegistryError, RenderError, ValidationError, WcsError, allowed_list)

CASES = [
    (ConfigError("render.noise", "yes", "not a boolean", [True, False]),
     "config key 'render.noise': not a boolean ('yes'); use one of [True, False].", ValueError),
    (CatalogError("cat.txt", 12, "magnorm is not a number", "'abc'"),
     "cat.txt:12: magnorm is not a number ('abc'); fix or delete the line.", ValueError),
    (CatalogError("cat.txt", 0, "missing header key 'mjd'", fix="add the key to the header"),
     "cat.txt: missing header key 'mjd'; add the key to the header.", ValueError),
    (CameraError("R00_S11", "a name such as R22_S11"),
     "unknown LSSTCam science sensor ('R00_S11'); use a name such as R22_S11.", KeyError),
    (RenderError("p.parquet", "cannot read", "rerun the step"), "p.parquet: cannot read; rerun the step.", Exception),
    (BundlingError("visit 1 R22_S11 needs 300 GB", "raise the node memory"),
     "visit 1 R22_S11 needs 300 GB; raise the node memory.", Exception),
    (ValidationError(77, {"R22_S12": ["sky"], "R22_S11": ["astrometry", "psf"]}, "validation/00000077/summary.tsv"),
     "validation/00000077/summary.tsv: visit 77: 2 sensor(s) failed validation (R22_S11: astrometry, psf; "
     "R22_S12: sky); see the VALIDATION FLAGGED lines of the log for the figures and fix the cause, or set "
     "validation.strict: false to record the flags without failing.", Exception),
    (RegistryError("r.json", "missing key", "visit", "rerun dc2flow record"),
     "r.json: missing key ('visit'); rerun dc2flow record.", ValueError),
    (ForecastError("e.tsv:3", "column 'mem_gb' is not a finite number >= 0", "x", "fix or delete the line"),
     "e.tsv:3: column 'mem_gb' is not a finite number >= 0 ('x'); fix or delete the line.", ValueError),
    (CampaignError("camp/campaign.json", "shard_size 100 differs from the planned 50", fix="plan again with 50"),
     "camp/campaign.json: shard_size 100 differs from the planned 50; plan again with 50.", ValueError),
    (CameraDescriptionError("policy/rafts.yaml: rafts.R22", "no 'offset'", fix="give the raft centre in mm"),
     "policy/rafts.yaml: rafts.R22: no 'offset'; give the raft centre in mm.", ValueError),
    (WcsError("camera.site", "unknown site", "paranal", "use obs_lsst or imsim-2022"),
     "camera.site: unknown site ('paranal'); use obs_lsst or imsim-2022.", ValueError),
]


@pytest.mark.parametrize("err,text,builtin", CASES, ids=[type(c[0]).__name__ + str(i) for i, c in enumerate(CASES)])
def test_message_builtin_and_pickle(err, text, builtin):
    assert str(err) == text
    assert isinstance(err, Dc2flowError) and isinstance(err, builtin)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == text and back.__dict__ == err.__dict__


def test_attributes_kept():
    err = CatalogError("a.txt", 3, "bad", "x")
    assert (err.path, err.line, err.value) == ("a.txt", 3, "x")
    err = ConfigError("k", 1, "too small", "[2, 3]")
    assert (err.key, err.value, err.allowed) == ("k", 1, "[2, 3]")


def test_allowed_list_elides_long_lists():
    assert allowed_list([1, 2, 3]) == "1, 2, 3"
    assert allowed_list(range(100), limit=4) == "0, 1, ..., 98, 99"
