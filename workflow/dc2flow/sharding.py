"""A campaign in shards: thousands of visits as a series of ordinary Snakemake runs.

Why: DC2 had ~30 000 instance catalogs, and one Snakemake run over all of them would hold 189
render jobs per visit plus their validation and registry jobs, millions in all; building and
scheduling a DAG gets slow well before that (~10^5 jobs).  So a campaign is cut into *shards* of
a fixed number of visits, each an ordinary Snakemake run with its own bundle plan, all writing
into one shared output root.  Snakemake (and through a profile, Slurm) does all the running; this
module only plans the shards and launches Snakemake processes, one after another or a few side by
side.  It is not a scheduler: it never looks inside a shard.

The campaign directory holds::

    campaign.json              the plan: settings, and per shard its visits and catalogs
    shards/shard-0000.yaml     a Snakemake config overlay: catalogs, outdir, shard
    shards/shard-0000/         the shard's Snakemake working directory (its own .snakemake/)
    logs/shard-0000.log        Snakemake's output for the shard (appended to on every run)
    state/shard-0000.done.json     the shard's last run succeeded (with the config hash it ran with)
    state/shard-0000.failed.json   its last run failed or was interrupted (exit code)
    state/shard-0000.running.json  it is running (process ids and host)
    run.lock                   held by the one ``dc2flow campaign run`` working on the campaign

A shard's visits are instance catalogs, one exposure each (snap 0): a base config naming OpSim
visits (``opsim_db``, ``visits``) or other ``snaps`` is refused, since every shard would render
those exposures again; so no exposure is ever split across shards or repeated.

Planning reads catalog headers only.  Re-planning with the same settings changes nothing; new
catalogs go into new shards appended after the existing ones (existing shards are never
renumbered or refilled); changing the shard size, output root or base config of a campaign that
has started is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import yaml

from .campaign import visits as campaign_visits
from .config import load, load_yaml, read_yaml, snakefile
from .config import profile_configfiles as config_profile_configfiles
from .errors import CampaignError
from .io import atomic_output, write_json

CAMPAIGN_FILE = "campaign.json"
FORMAT_VERSION = 1
STATES = ("planned", "running", "done", "failed")

# Snakemake options after which a run does no work: a shard that exits 0 with one of these
# gets no done marker (e.g. `dc2flow campaign run ... -- --unlock` or `-- -n`).
NO_WORK_OPTIONS = frozenset({
    "-n", "--dry-run", "--dryrun", "--touch", "-t", "--unlock", "--lint", "--dag", "--rulegraph",
    "--filegraph", "--d3dag", "--summary", "-S", "--detailed-summary", "-D", "--list-rules", "--list", "-l",
    "--list-target-rules", "--lt", "--list-changes", "--lc", "--list-input-changes", "--li",
    "--list-params-changes", "--lp", "--list-code-changes", "--list-untracked", "--lu", "--report",
    "--cleanup-metadata", "--cm", "--delete-all-output", "--delete-temp-output", "--containerize",
    "--archive", "--print-compilation", "--export-cwl", "--conda-create-envs-only", "--version", "-v",
    "--help", "-h"})
# Options the launcher sets itself for every shard.
RESERVED_OPTIONS = frozenset({"-s", "--snakefile", "-d", "--directory", "--configfile", "--configfiles",
                              "--profile"})


@dataclass(frozen=True)
class Shard:
    """One shard: a Snakemake run over some visits.

    Parameters:
        name:      ``shard-0000``, ``shard-0001``, ... (the config key ``shard`` of its run).
        visits:    its visit numbers, ascending.
        catalogs:  their instance catalogs (absolute paths), in the same order.
    """

    name: str
    visits: tuple[int, ...]
    catalogs: tuple[str, ...]


@dataclass(frozen=True)
class Campaign:
    """A sharded campaign as planned (``campaign.json``).

    Parameters:
        shard_size:  visits per shard (the last shard of each planning may hold fewer).
        outdir:      the output root every shard writes into (absolute).
        configfile:  the base Snakemake config file given to every shard (absolute), or None.
        shards:      the shards, in order.
    """

    shard_size: int
    outdir: str
    configfile: str | None
    shards: tuple[Shard, ...]

    def to_json(self) -> dict:
        return {"format": FORMAT_VERSION, "shard_size": self.shard_size, "outdir": self.outdir,
                "configfile": self.configfile, "n_visits": sum(len(s.visits) for s in self.shards),
                "shards": [{"name": s.name, "visits": list(s.visits), "catalogs": list(s.catalogs)}
                           for s in self.shards]}

    @classmethod
    def from_json(cls, data: dict) -> "Campaign":
        shards = tuple(Shard(s["name"], tuple(int(v) for v in s["visits"]), tuple(s["catalogs"]))
                       for s in data["shards"])
        return cls(int(data["shard_size"]), data["outdir"], data.get("configfile"), shards)

    def shard(self, name: str) -> Shard:
        for shard in self.shards:
            if shard.name == name:
                return shard
        raise KeyError(name)


# --- where things are --------------------------------------------------------------------------
def shard_name(index: int) -> str:
    return f"shard-{index:04d}"


def campaign_file(campaign_dir: str | os.PathLike) -> Path:
    return Path(campaign_dir) / CAMPAIGN_FILE


def shard_config(campaign_dir: str | os.PathLike, name: str) -> Path:
    """The shard's Snakemake config overlay (``shards/{name}.yaml``)."""
    return Path(campaign_dir) / "shards" / f"{name}.yaml"


def shard_workdir(campaign_dir: str | os.PathLike, name: str) -> Path:
    """The shard's Snakemake working directory (its ``--directory``; holds its ``.snakemake/``)."""
    return Path(campaign_dir) / "shards" / name


def shard_log(campaign_dir: str | os.PathLike, name: str) -> Path:
    return Path(campaign_dir) / "logs" / f"{name}.log"


def state_file(campaign_dir: str | os.PathLike, name: str, state: str) -> Path:
    """``state/{name}.{done|failed|running}.json``."""
    return Path(campaign_dir) / "state" / f"{name}.{state}.json"


def _utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- planning ----------------------------------------------------------------------------------
def read_campaign(campaign_dir: str | os.PathLike) -> Campaign:
    """The campaign planned in ``campaign_dir``.

    Raises:
        CampaignError: when there is no plan there, or it cannot be read.
    """
    path = campaign_file(campaign_dir)
    try:
        with open(path) as fh:
            return Campaign.from_json(json.load(fh))
    except FileNotFoundError:
        raise CampaignError(str(path), "no campaign planned here", fix="run 'dc2flow campaign plan' with this --dir "
                            "first") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CampaignError(str(path), f"not a campaign plan ({type(exc).__name__}: {exc})",
                            fix="restore it, or plan the campaign again in a new --dir") from None


def _check_base_config(configfile: str) -> None:
    """The base config: valid, without the per-shard keys, and no path that depends on the working
    directory (every shard runs in its own)."""
    for key in ("catalogs", "outdir", "shard"):
        if key in read_yaml(configfile):
            raise CampaignError(configfile, f"sets '{key}', which 'dc2flow campaign plan' sets for each shard",
                                fix="give the catalogs as arguments and the output root as --outdir, and remove "
                                    "catalogs, outdir and shard from the base config")
    config = load(configfile)
    # shards split instance catalogs (each one visit, snap 0): OpSim visits in the base config would be
    # rendered by every shard, all their snaps in each, into the one shared output root
    for key, value in (("opsim_db", config["opsim_db"]), ("visits", config["visits"]), ("sky_catalog", config["sky_catalog"])):
        if value:
            raise CampaignError(configfile, f"sets '{key}': a sharded campaign is of instance catalogs, and every shard "
                                "would render the OpSim visits (every snap) again", value,
                                fix="render OpSim visits in one ordinary run (snakemake --config opsim_db=... visits=...)")
    if [int(s) for s in config["snaps"]] != [0]:
        raise CampaignError(configfile, "sets 'snaps' other than [0]: instance catalogs are snap 0", config["snaps"],
                            fix="remove snaps from the base config")
    relative = []
    for key, value in (("scene.sed_dir", config["scene"]["sed_dir"]), ("estimate.model", config["estimate"]["model"])):
        if value and not os.path.isabs(value):
            relative.append((key, value))
    url = config["registry"]["url"]
    if url and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        relative.append(("registry.url", url))
    if relative:
        key, value = relative[0]
        raise CampaignError(configfile, f"{key} is a relative path, but every shard runs in its own directory "
                            "(shards/<name>/ of the campaign)", value, fix="make it absolute")


def _started(campaign_dir: Path, campaign: Campaign) -> list[str]:
    """Shards that have been run (a state marker, a log or a Snakemake directory)."""
    def started(name: str) -> bool:
        return (any(state_file(campaign_dir, name, st).exists() for st in ("done", "failed", "running"))
                or shard_log(campaign_dir, name).exists() or (shard_workdir(campaign_dir, name) / ".snakemake").exists())

    return [s.name for s in campaign.shards if started(s.name)]


def _shard_yaml(outdir: str, shard: Shard) -> str:
    head = (f"# dc2flow campaign shard {shard.name}: a Snakemake config overlay written by "
            "'dc2flow campaign plan' (do not edit)\n")
    return head + yaml.safe_dump({"catalogs": list(shard.catalogs), "outdir": outdir, "shard": shard.name},
                                 sort_keys=False, default_flow_style=False)


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    with atomic_output(path) as tmp, open(tmp, "w") as fh:
        fh.write(text)


def plan_campaign(catalog_patterns: Sequence[str], shard_size: int, outdir: str, campaign_dir: str | os.PathLike,
                  configfile: str | None = None) -> tuple[Campaign, list[Shard]]:
    """Plan (or extend) a sharded campaign: returns the campaign and the shards added now.

    Visits are sorted by number and cut into shards of ``shard_size``.  In a campaign directory
    that already holds a plan with the same settings, visits already planned keep their shards and
    the others go into new shards appended after them; with nothing new, nothing is written.

    Parameters:
        catalog_patterns:  instance catalogs, paths or glob patterns (only headers are read).
        shard_size:        visits per shard (e.g. 50-100: a few times 10^4 jobs per Snakemake run).
        outdir:            the output root shared by all shards (made absolute).
        campaign_dir:      where the plan, shard configs, logs and state go.
        configfile:        a base Snakemake config file for every shard [default: None, the defaults];
                           its paths must be absolute, and it must not set catalogs, outdir or shard.

    Raises:
        ConfigError:    a pattern matches nothing, two catalogs share a visit, or a bad value in the
                        base config.
        CatalogError:   a malformed catalog header.
        CampaignError:  a bad shard size or base config; the settings differ from those of a
                        campaign that has started; or a planned visit is now given by another catalog.
    """
    if not isinstance(shard_size, int) or shard_size < 1:
        raise CampaignError("--shard-size", "must be at least 1", shard_size, fix="give a number of visits per shard")
    campaign_dir = Path(campaign_dir)
    outdir = os.path.abspath(outdir)
    if configfile is not None:
        configfile = os.path.abspath(configfile)
        _check_base_config(configfile)
    entries = campaign_visits(list(catalog_patterns))  # sorted by visit
    catalogs = {v: os.path.abspath(e.catalog) for v, e in entries.items()}

    old: Campaign | None = read_campaign(campaign_dir) if campaign_file(campaign_dir).exists() else None
    if old is not None:
        changed = [(k, getattr(old, k), v) for k, v in (("shard_size", shard_size), ("outdir", outdir),
                                                         ("configfile", configfile)) if getattr(old, k) != v]
        if changed:
            started = _started(campaign_dir, old)
            if started:
                key, before, now = changed[0]
                raise CampaignError(str(campaign_file(campaign_dir)),
                                    f"{key} {now!r} differs from the planned {before!r}, and {len(started)} shard(s) "
                                    f"have run ({started[0]}...)", fix=f"plan again with {key} {before!r}, or plan a "
                                    "new campaign in another --dir")
            old = None  # nothing has run: plan afresh
    shards = list(old.shards) if old else []
    planned = {v: (s.name, c) for s in shards for v, c in zip(s.visits, s.catalogs)}
    for visit, path in catalogs.items():
        if visit in planned and planned[visit][1] != path:
            raise CampaignError(path, f"visit {visit} is planned in {planned[visit][0]} from {planned[visit][1]}",
                                fix="give each visit by one catalog, or plan a new campaign in another --dir")
    new = [v for v in catalogs if v not in planned]
    added = []
    for start in range(0, len(new), shard_size):
        chunk = new[start:start + shard_size]
        added.append(Shard(shard_name(len(shards) + len(added)), tuple(chunk), tuple(catalogs[v] for v in chunk)))
    result = Campaign(shard_size, outdir, configfile, tuple(shards + added))

    # shard configs first, then the plan naming them; stale configs of an abandoned plan go
    for shard in result.shards:
        _write_if_changed(shard_config(campaign_dir, shard.name), _shard_yaml(outdir, shard))
    keep = {shard_config(campaign_dir, s.name) for s in result.shards}
    for path in sorted((campaign_dir / "shards").glob("shard-*.yaml")):
        if path not in keep:
            path.unlink()
    text = json.dumps(result.to_json(), indent=1, sort_keys=True) + "\n"
    _write_if_changed(campaign_file(campaign_dir), text)
    return result, added


# --- state -------------------------------------------------------------------------------------
def config_hash(campaign_dir: str | os.PathLike, campaign: Campaign, shard: Shard) -> str:
    """sha256 (16 hex digits) of what a shard runs with: its overlay and the base config file.

    A done marker holds the hash it ran with; when the base config is edited afterwards, the
    shard counts as not done, and the next run hands it to Snakemake again (which then reruns
    only the jobs the change affects).  A missing base config hashes as empty.
    """
    digest = hashlib.sha256()
    for path in (campaign.configfile, str(shard_config(campaign_dir, shard.name))):
        digest.update(b"\0")
        if path and os.path.exists(path):
            digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ShardStatus:
    """What is known of one shard: ``state`` is planned, running, done or failed; ``detail`` says more."""

    name: str
    n_visits: int
    state: str
    detail: str
    log: str


def _read_json(path: Path) -> dict | None:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def shard_status(campaign_dir: str | os.PathLike, campaign: Campaign, shard: Shard) -> ShardStatus:
    """The state of one shard from its markers (see the module docstring)."""
    campaign_dir = Path(campaign_dir)
    log = str(shard_log(campaign_dir, shard.name))

    def status(state: str, detail: str = "") -> ShardStatus:
        return ShardStatus(shard.name, len(shard.visits), state, detail, log)

    running = _read_json(state_file(campaign_dir, shard.name, "running"))
    if running is not None:
        if running.get("host") != socket.gethostname():
            return status("running", f"on {running.get('host')}, snakemake pid {running.get('pid')}")
        if _alive(running.get("pid", 0)):
            return status("running", f"snakemake pid {running['pid']} since {running.get('started_utc')}")
        return status("failed", "its launcher ended without recording how it finished (killed?)")
    done = _read_json(state_file(campaign_dir, shard.name, "done"))
    if done is not None:
        if done.get("config_hash") == config_hash(campaign_dir, campaign, shard):
            return status("done", f"at {done.get('finished_utc')}")
        return status("planned", "done before its config changed: to run again")
    failed = _read_json(state_file(campaign_dir, shard.name, "failed"))
    if failed is not None:
        how = "interrupted" if failed.get("interrupted") else f"exit {failed.get('exit_code')}"
        return status("failed", f"{how} at {failed.get('finished_utc')}")
    return status("planned")


def campaign_status(campaign_dir: str | os.PathLike) -> tuple[Campaign, list[ShardStatus]]:
    campaign = read_campaign(campaign_dir)
    return campaign, [shard_status(campaign_dir, campaign, s) for s in campaign.shards]


def format_status(campaign: Campaign, statuses: Sequence[ShardStatus]) -> str:
    """A table, one row per shard, and the totals per state."""
    lines = [f"{'shard':<12} {'visits':>6}  {'state':<8} detail"]
    for s in statuses:
        lines.append(f"{s.name:<12} {s.n_visits:>6}  {s.state:<8} {s.detail}".rstrip())
    counts = {state: sum(s.state == state for s in statuses) for state in STATES}
    lines.append(f"{len(statuses)} shards, {sum(s.n_visits for s in statuses)} visits: "
                 + ", ".join(f"{counts[st]} {st}" for st in STATES) + f"; outdir {campaign.outdir}")
    return "\n".join(lines)


def status_json(campaign: Campaign, statuses: Sequence[ShardStatus]) -> dict:
    return {"outdir": campaign.outdir, "shard_size": campaign.shard_size,
            "shards": [dataclasses.asdict(s) for s in statuses],
            "totals": {state: sum(s.state == state for s in statuses) for state in STATES}}


# --- running -----------------------------------------------------------------------------------
def profile_configfiles(profile: str) -> list[str]:
    """The ``configfiles`` of a Snakemake profile, as absolute paths.

    Why: a ``--configfile`` on Snakemake's command line replaces the profile's ``configfiles``
    entry instead of adding to it (a profile entry is a default for the command-line option), so
    the launcher passes the profile's files itself, first, followed by the campaign's.  Relative
    paths are taken from the current directory, as Snakemake does, else from the repository root
    (where dc2flow's profiles say they are relative to).

    Raises:
        CampaignError: the profile cannot be found, or names a config file that does not exist.
    """
    from .smk import find_profile

    found = find_profile(profile)
    if found is None:
        raise CampaignError(profile, "no such Snakemake profile (a folder with config.yaml, or a profile name)",
                            fix="give a profile folder such as profiles/local")
    _, profile_file = found
    try:
        with open(profile_file) as fh:
            data = load_yaml(fh) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{profile_file}:{mark.line + 1}" if mark is not None else str(profile_file)
        raise CampaignError(where, f"not valid YAML ({getattr(exc, 'problem', None) or exc})",
                            fix="fix the profile's config.yaml") from None
    if not isinstance(data, dict):
        raise CampaignError(str(profile_file), "the top level is not a mapping of options",
                            fix="fix the profile's config.yaml")
    out = []
    for name, path in config_profile_configfiles(data):
        if path is None:
            raise CampaignError(str(profile_file), f"configfiles entry {name!r} is not found",
                                fix="run from the directory it is relative to (the repository root)")
        out.append(str(path))
    return out


def snakemake_command(campaign_dir: str | os.PathLike, campaign: Campaign, shard: Shard, profile: str,
                      profile_files: Sequence[str], extra_args: Sequence[str] = ()) -> list[str]:
    """The Snakemake command line of one shard (run in the launcher's current directory)."""
    configfiles = [*profile_files, *([campaign.configfile] if campaign.configfile else []),
                   str(shard_config(campaign_dir, shard.name))]
    profile = os.path.abspath(profile) if os.path.exists(profile) else profile
    # the extra arguments (targets among them) before --configfile, which takes every value after it
    return [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile()), "--profile", profile,
            "--directory", str(shard_workdir(campaign_dir, shard.name)), *extra_args, "--configfile", *configfiles]


def _check_extra(extra_args: Sequence[str]) -> None:
    for arg in extra_args:
        if arg.split("=", 1)[0] in RESERVED_OPTIONS:
            raise CampaignError("snakemake arguments", "set by 'dc2flow campaign run' for every shard", arg,
                                fix="leave out the profile, snakefile, directory and config files: they are the "
                                    "campaign's (--profile, and the base config given to 'plan')")


def _no_work(extra_args: Sequence[str]) -> bool:
    return any(a.split("=", 1)[0] in NO_WORK_OPTIONS for a in extra_args)


@contextlib.contextmanager
def run_lock(campaign_dir: Path) -> Iterator[None]:
    """Hold ``run.lock``: one launcher per campaign (flock; released when the process ends)."""
    import fcntl

    path = campaign_dir / "run.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise CampaignError(str(path), f"another 'dc2flow campaign run' is working on this campaign "
                                f"({fh.read().strip() or 'unknown pid'})",
                                fix="wait for it to finish or stop it (Ctrl-C), then run again") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        try:
            yield
        finally:
            fh.truncate(0)
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class _Running:
    shard: Shard
    proc: subprocess.Popen
    log: object
    started: float
    signalled: bool = False  # a signal was passed on to it: no done marker, whatever its exit status


def run_campaign(campaign_dir: str | os.PathLike, profile: str, parallel: int = 1, dry_run: bool = False,
                 extra_args: Sequence[str] = (), echo: Callable[[str], None] = print,
                 poll_s: float = 0.5) -> int:
    """Run every shard not yet done, up to ``parallel`` Snakemake processes at a time; 0 if all succeed.

    Each shard is ``snakemake --profile PROFILE --configfile [profile's files] [base] shards/NAME.yaml
    --directory shards/NAME [extra_args]``, started in the current directory with its output
    appended to ``logs/NAME.log``.  A shard that exits 0 gets a done marker holding its config
    hash, and later runs skip it; a failed shard gets a failed marker and is run again next time
    (Snakemake then redoes only what is missing).  SIGINT, SIGTERM and SIGHUP are passed on to the
    running Snakemake processes (SIGINT: Snakemake cancels its jobs; SIGTERM: it lets running jobs
    finish; SIGHUP is passed on as SIGTERM), no further shard starts, and interrupted shards get no
    done marker.

    Parameters:
        campaign_dir:  a planned campaign (``dc2flow campaign plan``).
        profile:       the Snakemake profile (``profiles/local``, ``profiles/slurm``, ...).
        parallel:      Snakemake processes side by side [default: 1].
        dry_run:       print each command instead of running it [default: False].
        extra_args:    more Snakemake arguments for every shard [default: none].  With one that
                       makes no outputs (``-n``, ``--unlock``, ``--touch``, ...) no done marker is written.
        echo:          where progress lines go [default: print].

    Returns:
        0 when every shard run now succeeded; 1 when one failed or was left running by an earlier
        launcher; 128 + the signal number when interrupted.

    Raises:
        CampaignError:  no plan, another launcher is running, a bad profile or ``parallel``, or a
                        Snakemake argument the launcher sets itself.
    """
    if not isinstance(parallel, int) or parallel < 1:
        raise CampaignError("--parallel", "must be at least 1", parallel, fix="give a number of Snakemake processes")
    _check_extra(extra_args)
    campaign_dir = Path(campaign_dir).resolve()
    campaign = read_campaign(campaign_dir)
    profile_files = profile_configfiles(profile)
    if dry_run:
        for shard in _to_run(campaign_dir, campaign, echo):
            echo(shlex.join(snakemake_command(campaign_dir, campaign, shard, profile, profile_files, extra_args)))
        return 0
    with run_lock(campaign_dir):
        todo = _to_run(campaign_dir, campaign, echo)
        orphans = any(shard_status(campaign_dir, campaign, s).state == "running" for s in campaign.shards)
        status = _launch(campaign_dir, campaign, todo, profile, profile_files, parallel, extra_args,
                         _no_work(extra_args), echo, poll_s) if todo else 0
        return status or (1 if orphans else 0)


def _to_run(campaign_dir: Path, campaign: Campaign, echo: Callable[[str], None]) -> list[Shard]:
    """The shards to run (planned or failed), after saying how many there are."""
    statuses = {s.name: shard_status(campaign_dir, campaign, s) for s in campaign.shards}
    todo = [s for s in campaign.shards if statuses[s.name].state in ("planned", "failed")]
    orphans = [s for s in campaign.shards if statuses[s.name].state == "running"]
    n_done = sum(st.state == "done" for st in statuses.values())
    echo(f"{len(campaign.shards)} shards: {n_done} done, {len(todo)} to run"
         + (f", {len(orphans)} still running from an earlier launcher" if orphans else ""))
    for shard in orphans:
        echo(f"{shard.name}: not started again: {statuses[shard.name].detail}")
    return todo


def _launch(campaign_dir: Path, campaign: Campaign, todo: list[Shard], profile: str, profile_files: Sequence[str],
            parallel: int, extra_args: Sequence[str], no_work: bool, echo: Callable[[str], None],
            poll_s: float) -> int:
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    pending = list(todo)
    running: list[_Running] = []
    failed: list[str] = []
    stop: list[int] = []  # the signals received

    def forward(signum, _frame):
        stop.append(signum)
        to_send = signal.SIGTERM if signum == signal.SIGHUP else signum
        alive = [r for r in running if r.proc.poll() is None]
        echo(f"signal {signal.Signals(signum).name}: passing it on to {len(alive)} Snakemake process(es), "
             "starting no more shards")
        for r in alive:
            r.signalled = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(r.proc.pid, to_send)

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, forward) for s in handled}
    try:
        while (pending and not stop) or running:
            while pending and not stop and len(running) < parallel:
                shard = pending.pop(0)
                running.append(_start(campaign_dir, campaign, shard, profile, profile_files, extra_args, env))
                echo(f"{shard.name}: started ({len(shard.visits)} visits, snakemake pid {running[-1].proc.pid}), "
                     f"log {shard_log(campaign_dir, shard.name)}")
            time.sleep(poll_s)
            for r in [r for r in running if r.proc.poll() is not None]:
                running.remove(r)
                ok = _finish(campaign_dir, campaign, r, no_work)
                rc = r.proc.returncode
                if ok:
                    echo(f"{r.shard.name}: " + ("finished (no done marker: the Snakemake arguments make no outputs)"
                                                if no_work else f"done in {time.time() - r.started:.0f} s"))
                else:
                    failed.append(r.shard.name)
                    how = "interrupted" if r.signalled else f"failed (exit {rc})"
                    echo(f"{r.shard.name}: {how}; see {shard_log(campaign_dir, r.shard.name)}")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if failed:
        echo(f"{len(failed)} shard(s) not done: {', '.join(failed)}; 'dc2flow campaign run' again resumes")
    if stop:
        return 128 + stop[0]
    return 1 if failed else 0


def _start(campaign_dir: Path, campaign: Campaign, shard: Shard, profile: str, profile_files: Sequence[str],
           extra_args: Sequence[str], env: dict) -> _Running:
    cmd = snakemake_command(campaign_dir, campaign, shard, profile, profile_files, extra_args)
    shard_workdir(campaign_dir, shard.name).mkdir(parents=True, exist_ok=True)
    log_path = shard_log(campaign_dir, shard.name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "a")
    log.write(f"=== dc2flow campaign run {_utc()}: {shlex.join(cmd)}\n")
    log.flush()
    # its own process group: a Ctrl-C in the terminal reaches the launcher only, which passes it on once
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                            process_group=0)
    with contextlib.suppress(FileNotFoundError):
        state_file(campaign_dir, shard.name, "failed").unlink()
    with contextlib.suppress(FileNotFoundError):
        state_file(campaign_dir, shard.name, "done").unlink()
    write_json(state_file(campaign_dir, shard.name, "running"),
               {"pid": proc.pid, "launcher_pid": os.getpid(), "host": socket.gethostname(),
                "started_utc": _utc(), "command": cmd})
    return _Running(shard, proc, log, time.time())


def _finish(campaign_dir: Path, campaign: Campaign, r: _Running, no_work: bool) -> bool:
    """Record how a shard's Snakemake ended; True when it succeeded (exit 0, and no signal passed on)."""
    r.log.close()
    rc = r.proc.returncode
    interrupted = r.signalled
    ok = rc == 0 and not interrupted
    if ok and not no_work:
        write_json(state_file(campaign_dir, r.shard.name, "done"),
                   {"config_hash": config_hash(campaign_dir, campaign, r.shard), "finished_utc": _utc(),
                    "visits": list(r.shard.visits), "runtime_s": round(time.time() - r.started, 1)})
    elif not ok:
        write_json(state_file(campaign_dir, r.shard.name, "failed"),
                   {"exit_code": rc, "interrupted": interrupted, "finished_utc": _utc(),
                    "log": str(shard_log(campaign_dir, r.shard.name))})
    state_file(campaign_dir, r.shard.name, "running").unlink(missing_ok=True)
    return ok
