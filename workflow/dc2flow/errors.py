"""Every exception and warning dc2flow raises, in one tree.

Which to raise, when:

=====================  ==========================================================================
class                  raise it when
=====================  ==========================================================================
``Dc2flowError``       never directly: the base class, the only one the CLI catches
``ConfigError``        a config key has a bad type or value (``key`` path, ``value``, ``allowed``)
``CatalogError``       an instance catalog is malformed or missing (``path``, ``line``, ``value``)
``CameraError``        an unknown sensor name or detector number is asked for
``CameraDescriptionError`` a camera description (obs_lsst policy files, the sensor table) is malformed (``where``)
``WcsError``           a visit's WCS cannot be built or read (``where`` = the visit, file or option)
``RenderError``        a sensor cannot be rendered from valid inputs (e.g. a stage file is corrupt)
``EstimateError``      an estimates table (or a table of sensor jobs) is malformed (``where`` = ``file:line``)
``BundlingError``      a sensor cannot be packed (e.g. it needs more than a node), or a plan is malformed
``ValidationError``    strict validation: rendered sensors fail their checks (``visit``, ``flagged``)
``RegistryError``      a registry record, database or viewer request is invalid (``where``, ``value``)
``ForecastError``      a cost forecast's input (profile, reused estimates table) is malformed (``where``)
``CampaignError``      a sharded campaign cannot be planned or run as asked (``where``, ``value``)
``Dc2flowWarning``     recoverable trouble, e.g. objects skipped or a header key defaulted
=====================  ==========================================================================

Every message has the form ``<where>: <what is wrong> (<value>); <how to fix it>.`` where
``<where>`` is ``file:line`` for catalogs and the dotted key for config.  The facts are kept as
attributes and each class defines ``__reduce__`` so it survives a trip through a worker process.
"""

from __future__ import annotations

from typing import Any, Sequence


class Dc2flowError(Exception):
    """Base class of every dc2flow error: the CLI prints these without a traceback."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __reduce__(self):
        return (self.__class__, (self.message,))


class ConfigError(Dc2flowError, ValueError):
    """A configuration value is missing, of the wrong type or out of range.

    Parameters:
        key:      dotted path of the key, e.g. ``render.sky_mag.r``.
        value:    the offending value.
        reason:   what is wrong with it.
        allowed:  the allowed values or range, shown in the message [default: None].
    """

    def __init__(self, key: str, value: Any, reason: str, allowed: Any = None):
        self.key, self.value, self.reason, self.allowed = key, value, reason, allowed
        fix = f"use one of {allowed}" if allowed is not None else "fix the value"
        super().__init__(f"config key '{key}': {reason} ({value!r}); {fix}.")

    def __reduce__(self):
        return (self.__class__, (self.key, self.value, self.reason, self.allowed))


class CatalogError(Dc2flowError, ValueError):
    """An instance catalog (or a file it includes) is malformed or cannot be read.

    Parameters:
        path:    the file, as given (an included file is named by its own path).
        line:    1-based line number, or 0 when the problem is not on one line.
        reason:  what is wrong.
        value:   the offending text [default: None].
        fix:     how to fix it [default: "fix or delete the line"].
    """

    def __init__(self, path: str, line: int, reason: str, value: Any = None,
                 fix: str = "fix or delete the line"):
        self.path, self.line, self.reason, self.value, self.fix = str(path), int(line), reason, value, fix
        where = f"{self.path}:{self.line}" if self.line else self.path
        shown = f" ({value})" if value is not None else ""
        super().__init__(f"{where}: {reason}{shown}; {fix}.")

    def __reduce__(self):
        return (self.__class__, (self.path, self.line, self.reason, self.value, self.fix))


class CameraError(Dc2flowError, KeyError):
    """An unknown sensor name or detector number.

    Parameters:
        value:    the name or number asked for.
        allowed:  a description of the valid values.
    """

    def __init__(self, value: Any, allowed: str):
        self.value, self.allowed = value, allowed
        super().__init__(f"unknown LSSTCam science sensor ({value!r}); use {allowed}.")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.message

    def __reduce__(self):
        return (self.__class__, (self.value, self.allowed))


class RenderError(Dc2flowError):
    """A sensor cannot be rendered from its inputs.

    Parameters:
        path:    the input or output file concerned.
        reason:  what is wrong.
        fix:     how to fix it.
    """

    def __init__(self, path: str, reason: str, fix: str):
        self.path, self.reason, self.fix = str(path), reason, fix
        super().__init__(f"{self.path}: {reason}; {fix}.")

    def __reduce__(self):
        return (self.__class__, (self.path, self.reason, self.fix))


class BundlingError(Dc2flowError):
    """Sensor jobs cannot be packed into bundles.

    Parameters:
        reason:  what is wrong, naming the visit and sensor.
        fix:     how to fix it.
    """

    def __init__(self, reason: str, fix: str):
        self.reason, self.fix = reason, fix
        super().__init__(f"{reason}; {fix}.")

    def __reduce__(self):
        return (self.__class__, (self.reason, self.fix))


class ValidationError(Dc2flowError):
    """Rendered sensors failed validation and the run was asked to be strict.

    Parameters:
        visit:    the visit.
        flagged:  det_name -> the names of its failed checks (e.g. ``["astrometry", "psf"]``).
        where:    the summary table (or record) that lists the figures.
    """

    def __init__(self, visit: int, flagged: dict, where: str):
        self.visit, self.flagged, self.where = int(visit), {k: list(v) for k, v in flagged.items()}, str(where)
        names = "; ".join(f"{det}: {', '.join(checks)}" for det, checks in sorted(self.flagged.items()))
        super().__init__(f"{self.where}: visit {self.visit}: {len(self.flagged)} sensor(s) failed validation "
                         f"({names}); see the VALIDATION FLAGGED lines of the log for the figures and fix the cause, "
                         f"or set validation.strict: false to record the flags without failing.")

    def __reduce__(self):
        return (self.__class__, (self.visit, self.flagged, self.where))


class _WhereError(Dc2flowError, ValueError):
    """Base of the errors that name where (a file, ``file:line``, URL or field), what, the value and a fix.

    Parameters:
        where:   the file, ``file:line``, database URL, option or request field concerned.
        reason:  what is wrong.
        value:   the offending value [default: None].
        fix:     how to fix it [default: "fix the value"].
    """

    def __init__(self, where: str, reason: str, value: Any = None, fix: str = "fix the value"):
        self.where, self.reason, self.value, self.fix = str(where), reason, value, fix
        shown = f" ({value!r})" if value is not None else ""
        super().__init__(f"{self.where}: {reason}{shown}; {fix}.")

    def __reduce__(self):
        return (self.__class__, (self.where, self.reason, self.value, self.fix))


class RegistryError(_WhereError):
    """A campaign-registry record, database URL or viewer request is invalid (see :class:`_WhereError`)."""


class EstimateError(_WhereError):
    """An estimates table (``estimates/{visit}.tsv``) or a table of sensor jobs is malformed or
    unreadable; ``where`` is ``file:line`` (see :class:`_WhereError`)."""


class ForecastError(_WhereError):
    """An input of the cost forecast (a site profile, a reused estimates table) is malformed; ``where``
    is ``file:line`` or the folder (see :class:`_WhereError`)."""


class CampaignError(_WhereError):
    """A sharded campaign (``dc2flow campaign``) cannot be planned or run as asked; ``where`` is the
    campaign file, catalog, profile or option (see :class:`_WhereError`)."""


class CameraDescriptionError(_WhereError):
    """A camera description (obs_lsst-style ``policy/`` files or the derived sensor table) is missing
    a file or key or holds a bad value; ``where`` is the file and key (see :class:`_WhereError`)."""


class WcsError(_WhereError):
    """A visit's WCS cannot be built (unknown optics, site or band) or a stored WCS cannot be read;
    ``where`` is the visit, the file or the config key (see :class:`_WhereError`)."""


class Dc2flowWarning(UserWarning):
    """Recoverable trouble: objects skipped, a header key defaulted, an SED replaced."""


def allowed_list(values: Sequence[Any], limit: int = 8) -> str:
    """Format allowed values for a message, eliding the middle of long lists."""
    values = list(values)
    if len(values) <= limit:
        return ", ".join(map(str, values))
    return ", ".join(map(str, values[: limit // 2])) + ", ..., " + ", ".join(map(str, values[-limit // 2 :]))
