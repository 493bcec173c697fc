"""One schema, one defaults file, one README: they agree, and bad values are named."""

import re

import pytest
import yaml

from conftest import REPO
from dc2flow import config
from dc2flow.errors import ConfigError


def _leaves(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _schema_defaults(node, prefix=""):
    out = {}
    for key, sub in node.get("properties", {}).items():
        if "properties" in sub:
            out.update(_schema_defaults(sub, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = sub.get("default", "<no default>")
    return out


def test_schema_defaults_and_config_yaml_agree():
    assert _leaves(yaml.safe_load(open(REPO / "config" / "config.yaml"))) == _schema_defaults(config.schema())


def test_every_key_has_a_description():
    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            assert sub.get("description"), f"{path}{key}"
            walk(sub, f"{path}{key}.")
    walk(config.schema(), "")


def test_readme_documents_every_key_with_its_default():
    rows = dict(re.findall(r"^\| `([\w.]+)` \| `([^`]*)` \|", (REPO / "config" / "README.md").read_text(), re.M))
    defaults = _leaves(yaml.safe_load(open(REPO / "config" / "config.yaml")))
    assert set(rows) == set(defaults)
    for key, value in defaults.items():
        assert yaml.safe_load(rows[key]) == value, key


def test_defaults_validate():
    cfg = config.load()
    assert cfg["sensors"] == "all" and cfg["outdir"] == "results"


@pytest.mark.parametrize("override,key", [({"render": {"noise": "yes"}}, "render.noise"),
                                          ({"scene": {"sky_mag": {"r": 5}}}, "scene.sky_mag.r"),
                                          ({"partition": {"typo": 1}}, "partition.typo"),
                                          ({"sensors": ["R44_S11"]}, "sensors"),
                                          ({"sensors": "some"}, "sensors"),
                                          ({"outdir": ""}, "outdir")])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=re.escape(f"config key '{key}'")):
        config.load(overrides=override)


def test_options_parsing_and_hash(tmp_path):
    base = config.parse_options(None)
    assert set(base) == {"camera", "scene", "partition", "render"}
    changed = config.parse_options('{"render": {"noise": false}}')
    assert changed["render"]["noise"] is False and changed["scene"] == base["scene"]
    assert config.options_hash(changed) != config.options_hash(base)
    assert config.options_hash(config.parse_options(config.options_json(base))) == config.options_hash(base)
    f = tmp_path / "o.yaml"
    f.write_text("scene: {optics_fwhm_arcsec: 0.4}\n")
    assert config.parse_options(f"@{f}")["scene"]["optics_fwhm_arcsec"] == 0.4
    with pytest.raises(ConfigError, match="not a physics section"):
        config.parse_options('{"catalogs": []}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        config.parse_options("{")


def test_resolve_catalogs(tmp_path):
    for name in ("b.txt", "a.txt"):
        (tmp_path / name).write_text("x")
    assert config.resolve_catalogs([str(tmp_path / "*.txt"), str(tmp_path / "a.txt")]) == \
        [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    with pytest.raises(ConfigError, match="matches no file"):
        config.resolve_catalogs([str(tmp_path / "c.txt")])


def test_existing_catalog_is_taken_literally_before_glob(tmp_path):
    (tmp_path / "cat[1].txt").write_text("x")
    assert config.resolve_catalogs([str(tmp_path / "cat[1].txt")]) == [str(tmp_path / "cat[1].txt")]
    (tmp_path / "cat1.txt").write_text("x")     # what the name means as a glob, only when no such file
    assert config.resolve_catalogs([str(tmp_path / "cat[1].txt")]) == [str(tmp_path / "cat[1].txt")]
    assert config.resolve_catalogs([str(tmp_path / "cat[12].txt")]) == [str(tmp_path / "cat1.txt")]


def test_selected_sensors_in_detector_order():
    assert config.selected_sensors({"sensors": ["R22_S12", "R01_S00"]}) == ["R01_S00", "R22_S12"]
    assert len(config.selected_sensors({"sensors": "all"})) == 189
