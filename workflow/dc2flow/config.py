"""Configuration: one schema, defaults in one file.

``config/config.yaml`` holds every default (with a comment per key) and
``workflow/schemas/config.schema.yaml`` the types and ranges (both ship in the package as
``dc2flow/data/``); ``config/README.md`` documents
both.  Snakemake validates its config with :func:`validate` in ``common.smk``; by hand,
:func:`load` reads the same files.  The *physics options* (sections ``scene``, ``partition`` and
``render``) are what the partition and render stages receive and what the FITS headers hash.
"""

from __future__ import annotations

import copy
import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

from .errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout, when the package runs from one
# Package data (links to config/config.yaml and workflow/schemas/config.schema.yaml in the source
# tree; a wheel holds copies), so that an installed, non-editable dc2flow has its defaults.
PACKAGE_DATA = Path(__file__).resolve().parent / "data"
DEFAULT_CONFIG = PACKAGE_DATA / "config.yaml"
SCHEMA = PACKAGE_DATA / "config.schema.yaml"
PHYSICS_SECTIONS = ("camera", "scene", "partition", "render")


YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it (the same documents, ~10x faster than the pure-Python
one: every dc2flow job reads the defaults and the schema)."""


def load_yaml(fh):
    """``yaml.safe_load`` through :data:`YAML_LOADER`."""
    return yaml.load(fh, Loader=YAML_LOADER)


def read_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML (or JSON) mapping; a missing file or non-mapping is a ConfigError."""
    try:
        with open(path) as fh:
            data = load_yaml(fh)
    except FileNotFoundError:
        raise ConfigError("configfile", str(path), "file not found", "an existing YAML file") from None
    except yaml.YAMLError as exc:
        raise ConfigError("configfile", str(path), f"not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("configfile", str(path), "the top level must be a mapping of keys")
    return data


def profile_configfiles(profile: dict) -> list[tuple[str, Path | None]]:
    """(entry, file) for each ``configfiles`` (or ``configfile``) entry of a Snakemake profile's
    ``config.yaml``: where Snakemake finds it (as given, from the directory it starts in), else from
    the repository root (dc2flow's profiles name their files from there); file None when neither exists.

    One lookup for ``dc2flow forecast --profile`` and ``dc2flow campaign run``, so both read the
    node shape Snakemake will.
    """
    names = profile.get("configfiles", profile.get("configfile")) or []
    out = []
    for name in [names] if isinstance(names, str) else list(names):
        candidates = [Path(name)] if os.path.isabs(name) else [Path(os.path.abspath(name)), REPO_ROOT / name]
        out.append((str(name), next((c for c in candidates if c.is_file()), None)))
    return out


def snakefile() -> Path:
    """The workflow's Snakefile: the checkout's this package runs from, else ./Snakefile (an installed,
    non-editable dc2flow run from a checkout of the workflow)."""
    for candidate in (REPO_ROOT / "Snakefile", Path(os.path.abspath("Snakefile"))):
        if candidate.is_file():
            return candidate
    raise ConfigError("snakefile", os.getcwd(), "no dc2flow Snakefile beside the package or in this directory",
                      [str(REPO_ROOT / "Snakefile"), "./Snakefile (run from a checkout of the workflow)"])


def merge(base: dict, override: dict) -> dict:
    """Deep-merge ``override`` into a copy of ``base`` (mappings merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def schema() -> dict:
    with open(SCHEMA) as fh:
        return load_yaml(fh)


def validate(config: dict) -> dict:
    """Check ``config`` against the schema; returns it unchanged.

    Raises:
        ConfigError: naming the dotted key, the bad value and what is allowed.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        key = ".".join(map(str, err.absolute_path)) or "(top level)"
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            raise ConfigError(f"{key}.{extra[0]}" if key != "(top level)" else extra[0], err.instance[extra[0]],
                              "unknown key", sorted(err.schema.get("properties", {})))
        allowed = err.schema.get("enum") or _range(err.schema)
        raise ConfigError(key, err.instance, err.message, allowed)
    if isinstance(config.get("sensors"), list):
        from .camera import DET_NAMES

        unknown = [n for n in config["sensors"] if n not in DET_NAMES]
        if unknown:
            raise ConfigError("sensors", unknown[0], "not an LSSTCam science sensor",
                              "names R{ij}_S{kl} of the 21 science rafts (no corner rafts R00 R04 R40 R44)")
    return config


def _range(sub: dict) -> str | None:
    lo = sub.get("minimum", sub.get("exclusiveMinimum"))
    hi = sub.get("maximum", sub.get("exclusiveMaximum"))
    if lo is None and hi is None:
        return None
    return f"a {sub.get('type', 'value')} in [{lo}, {hi}]"


def load(configfile: str | os.PathLike | None = None, overrides: dict | None = None) -> dict:
    """The validated configuration: defaults, then ``configfile``, then ``overrides``."""
    config = read_yaml(DEFAULT_CONFIG)
    if configfile:
        config = merge(config, read_yaml(configfile))
    if overrides:
        config = merge(config, overrides)
    return validate(config)


def physics_options(config: dict) -> dict:
    """The sections that change pixels (camera, scene, partition, render)."""
    return {k: copy.deepcopy(config[k]) for k in PHYSICS_SECTIONS}


def _read_options(text: str, what: str, allowed=None) -> dict:
    """A mapping from an ``--options`` value: JSON text or ``@file`` (JSON/YAML)."""
    if text.startswith("@"):
        given = read_yaml(text[1:])
    else:
        try:
            given = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("--options", text[:60], f"not valid JSON: {exc.msg}") from None
    if not isinstance(given, dict):
        raise ConfigError("--options", given, f"must be a mapping of {what}", allowed)
    return given


def parse_options(text: str | None) -> dict:
    """Physics options from JSON text, ``@file`` (JSON/YAML) or None (the defaults), validated."""
    defaults = load()
    if not text:
        return physics_options(defaults)
    given = _read_options(text, "sections", list(PHYSICS_SECTIONS))
    unknown = sorted(set(given) - set(PHYSICS_SECTIONS))
    if unknown:
        raise ConfigError(unknown[0], given[unknown[0]], "not a physics section", list(PHYSICS_SECTIONS))
    return physics_options(validate(merge(defaults, given)))


def section_options(text: str | None, section: str) -> dict:
    """One config section (e.g. ``validation``) from JSON text or ``@file`` of that section's keys,
    merged over the defaults and validated; None gives the defaults.

    These sections never change pixels: they are not physics options.
    """
    if not text:
        return load()[section]
    return load(overrides={section: _read_options(text, f"{section} keys")})[section]


def options_json(options: dict) -> str:
    """Canonical JSON of physics options (sorted keys, no spaces)."""
    return json.dumps(options, sort_keys=True, separators=(",", ":"))


def options_hash(options: dict) -> str:
    """sha256 (first 16 hex digits) of the canonical JSON: the config hash in FITS headers."""
    return hashlib.sha256(options_json(options).encode()).hexdigest()[:16]


def resolve_catalogs(patterns: Iterable[str]) -> list[str]:
    """Expand paths/globs to a sorted, de-duplicated list of catalog files.

    An existing file is taken literally, before the name is tried as a glob: ``cat[1].txt`` is
    that file when it exists, and the pattern matching ``cat1.txt`` only when it does not.

    Raises:
        ConfigError: when a pattern matches no file.
    """
    found: set[str] = set()
    for pattern in patterns:
        if os.path.isfile(pattern):
            matches = [pattern]
        else:
            matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else []
        if not matches:
            raise ConfigError("catalogs", pattern, "matches no file", "existing paths or glob patterns")
        found.update(os.path.normpath(m) for m in matches)
    return sorted(found)


def selected_sensors(config: dict) -> list[str]:
    """The det_names to render, in detector-number order."""
    from .camera import DET_NAMES, get_sensor

    if config["sensors"] == "all":
        return list(DET_NAMES)
    return [s.det_name for s in sorted((get_sensor(n) for n in config["sensors"]), key=lambda s: s.det_num)]


def load_json(path: str | os.PathLike) -> Any:
    with open(path) as fh:
        return json.load(fh)
