"""A run directory and its study: where every file of a run lives, and opening the study.

The study storage is the source of truth of a run; the files beside it (its spec, results.json,
the best model's ONNX file, the weights of each trained candidate) are written from it, each
atomically, and the summaries (results.json, best.onnx) by one process at a time
(`RunDir.writing`), each from the study as it is at that moment. So two searches on one run
directory (or several on one study through ``--storage``) never write a summary from an
out-of-date view, and results.json never goes backwards.

A run directory whose study.db is missing, empty or damaged while the files beside it show that
a search ran there is refused (`check_study_file`): it is never silently started over.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from edgenas._io import read_json, write_json
from edgenas.errors import ConfigError
from edgenas.study import _records as R

__all__ = [
    "FINAL_DIR",
    "RunDir",
    "check_spec",
    "check_study_file",
    "check_study_matches",
    "load_result",
    "open_run_study",
    "open_study",
    "redact",
]

log = logging.getLogger("edgenas.search")

STUDY_NAME = "edgenas"
FINAL_DIR = "final"  # what edgenas finalize writes
# Files that show a search ran in a run directory: they summarise a study that must be there.
EVIDENCE = ("results.json", "best.onnx", "trials", FINAL_DIR)
# Seconds a process waits for another's summary writing before it says that it waits.
LOCK_PATIENCE_S = 10.0
# Settings that change what a trial's numbers mean: a resumed run must keep them.
# (The data is compared by its fingerprint, so ./parts and parts are the same data.)
SPEC_KEYS = ("data_fingerprint", "space", "constraints", "objective", "epochs", "data_fraction",
             "energy", "latency_profile", "search_training", "metric",
             "class_weights")  # fmt: skip
# What a spec written before a key existed meant by leaving it out.
SPEC_DEFAULTS = {"metric": "accuracy", "class_weights": "none"}


@dataclass(frozen=True)
class RunDir:
    """The files of one run directory (``runs/<name>/``), each named in one place.

    Example:
        >>> run = RunDir(Path("runs/elpv"))
        >>> run.results, run.trial_model(7)
        (PosixPath('runs/elpv/results.json'), PosixPath('runs/elpv/trials/00007/model.pt'))
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def spec(self) -> Path:
        """The search's settings, checked when a run resumes."""
        return self.root / "spec.json"

    @property
    def results(self) -> Path:
        """Every trial, the Pareto front and the best, rewritten after each trial."""
        return self.root / "results.json"

    @property
    def best_onnx(self) -> Path:
        """The best candidate exported at the end of the search."""
        return self.root / "best.onnx"

    @property
    def supernet(self) -> Path:
        """The supernet of a one-shot search, checkpointed during its training."""
        return self.root / "supernet.pt"

    @property
    def study_db(self) -> Path:
        """The study, unless the spec names another storage."""
        return self.root / "study.db"

    @property
    def cache(self) -> Path:
        """The decoded data, shared by every process that trains for this run."""
        return self.root / "cache"

    @property
    def latency_cache(self) -> Path:
        """Latencies measured on this machine, by genotype."""
        return self.root / "latency_cache.json"

    def trial_model(self, number: int) -> Path:
        """The weights of trial ``number``, saved when its training completed."""
        return self.root / "trials" / f"{number:05d}" / "model.pt"

    @property
    def final(self) -> Path:
        """What ``edgenas finalize`` writes."""
        return self.root / FINAL_DIR

    @property
    def final_json(self) -> Path:
        return self.final / "final.json"

    @property
    def storage_url(self) -> str:
        """The SQLAlchemy URL of the run's own ``study.db``."""
        return f"sqlite:///{self.study_db.resolve()}"

    def study_name(self, shared_storage: bool) -> str:
        """The study's name: alone in its study.db, or named after the run in a shared one."""
        return f"{STUDY_NAME}:{self.root.resolve().name}" if shared_storage else STUDY_NAME

    def evidence(self) -> list[str]:
        """The names of the files here that show a search ran in this directory."""
        return [name for name in EVIDENCE if (self.root / name).exists()]

    @property
    def lock_file(self) -> Path:
        """Held by the process that writes the run's summaries (see `writing`)."""
        return self.root / ".edgenas.lock"

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the run directory's writer lock: while it is held, no other process writes
        results.json or best.onnx here. Re-entrant within a process; other processes wait."""
        from filelock import FileLock, Timeout

        self.root.mkdir(parents=True, exist_ok=True)
        # One lock object per file in this process (is_singleton), so nesting re-enters it.
        lock = FileLock(self.lock_file, is_singleton=True)
        try:
            lock.acquire(timeout=LOCK_PATIENCE_S)
        except Timeout:
            log.warning(
                "waiting for another edgenas process to finish writing the summaries of %s",
                self.root,
            )
            lock.acquire()
        try:
            yield
        finally:
            lock.release()


def redact(url: str) -> str:
    """A database URL without its password, fit to print and to record."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<a URL that does not parse>"


def open_study(
    run_dir: Path, directions: list[Any] | None = None, storage: str | None = None
) -> optuna.Study:
    """Open (or create, when ``directions`` are given) the study of a run directory: in its
    ``study.db``, or in ``storage`` (any SQLAlchemy URL) under the run directory's name.

    Raises:
        ConfigError: the database's driver is not installed, the URL is not one, the server
            cannot be reached, or the database is locked.
    """
    import sqlalchemy.exc

    run = RunDir(run_dir)
    url = storage or run.storage_url
    name = run.study_name(shared_storage=storage is not None)
    shown = "the run's study.db" if storage is None else f"--storage {redact(url)}"
    sqlite = url.startswith("sqlite")
    kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}
    )
    if storage is None:
        check_study_file(run)
    try:
        rdb = _rdb_storage(url, kwargs)
        if directions is None:
            return optuna.load_study(study_name=name, storage=rdb)
        return optuna.create_study(
            study_name=name, storage=rdb, directions=directions, load_if_exists=True
        )
    except KeyError:  # optuna.load_study: no study of that name
        where = f"{run.root}/study.db" if storage is None else shown
        raise ConfigError(
            f"{where} holds no edgenas study named {name!r}: "
            + (
                "the database is not this run's. Restore the run's study.db, or choose "
                "another directory"
                if storage is None
                else "check the run directory's name (it names the study in a shared "
                "database) and the URL"
            )
        ) from None
    except (
        ModuleNotFoundError,
        sqlalchemy.exc.NoSuchModuleError,
        sqlalchemy.exc.ArgumentError,
    ) as exc:
        raise url_error(exc, url, shown) from None
    except sqlalchemy.exc.OperationalError as exc:
        first = str(exc.orig or exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
        if "locked" in first:
            raise ConfigError(
                f"{shown} is locked by another process ({first}); wait for it, or give "
                "several searches a server database with --storage"
            ) from None
        raise ConfigError(
            f"cannot reach the study database {shown} ({first}): check that the server runs "
            "(or the file's folder exists) and the URL; a password goes in PGPASSWORD or "
            "~/.pgpass rather than the URL"
        ) from None
    except sqlalchemy.exc.DatabaseError as exc:
        first = str(exc.orig or exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"the study database {shown} is damaged ({first}){_RECOVER}") from None


# How often a storage is opened again after losing the race to set its tables up.
_SETUP_ATTEMPTS = 4


def _rdb_storage(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """Optuna's storage at ``url``. Two processes that open a new database at once (a search
    starting while ``edgenas show`` looks at it, or several searches or Ray workers on one
    fresh server database) both create its tables and stamp their version; the loser gets
    "table ... already exists" or a unique-constraint error, not a damaged database. The
    tables are there by then, so it opens the storage again."""
    for attempt in range(1, _SETUP_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except Exception as exc:
            if not _lost_setup_race(exc):
                raise
            log.debug("another process set up %s at the same time (%s); opening it again",
                      redact(url), exc)  # fmt: skip
            time.sleep(0.1 * attempt)
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)  # its error is final


def _lost_setup_race(exc: Exception) -> bool:
    """Whether ``exc`` is what creating a database's tables raises when another process
    created them first: a duplicate row (the schema version) or a table that exists."""
    import sqlalchemy.exc

    if isinstance(exc, sqlalchemy.exc.IntegrityError):
        return True
    return isinstance(
        exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError)
    ) and "already exists" in str(exc.orig or exc)


def url_error(exc: Exception, url: str, shown: str) -> ConfigError:
    """The message for a database URL that does not parse or whose driver is missing
    (``exc`` from SQLAlchemy or the driver's import); ``shown`` names the URL."""
    import sqlalchemy.exc

    if isinstance(exc, ModuleNotFoundError):
        extra = " (pip install 'edgenas[postgres]')" if url.startswith("postgres") else ""
        return ConfigError(f"{shown}: its database driver {exc.name!r} is not installed{extra}")
    if isinstance(exc, sqlalchemy.exc.NoSuchModuleError):
        return ConfigError(
            f"{shown}: SQLAlchemy has no driver for it installed; install the driver the URL "
            "names (for PostgreSQL: pip install 'edgenas[postgres]')"
        )
    return ConfigError(
        f"{shown} is not a database URL; write one such as "
        "postgresql+psycopg://user@host:5432/edgenas"
    )


_RECOVER = (
    ": the study is the record of every trial, so edgenas starts nothing over it. Restore it "
    "from a backup, or choose another run directory (--out) to start again"
)


def _sqlite_problem(db: Path) -> str | None:
    """Why the SQLite file ``db`` cannot be a sound database, or None (a quick check: the
    header, then SQLite's own ``PRAGMA quick_check``)."""
    try:
        with db.open("rb") as f:
            header = f.read(16)
    except OSError as exc:
        return f"it cannot be read: {exc.strerror or exc}"
    if header != b"SQLite format 3\x00":
        return "it is not a SQLite database"
    try:
        # Read-write, not read-only: a process killed mid-write leaves a journal that SQLite
        # rolls back on the next open, which a read-only connection cannot do.
        connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=rw", uri=True, timeout=60)
        try:
            rows = connection.execute("PRAGMA quick_check").fetchall()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    problems = [str(r[0]) for r in rows if r and r[0] != "ok"]
    return "; ".join(problems[:2]) if problems else None


def check_study_file(run: RunDir) -> None:
    """Refuse a run directory whose own study.db is damaged, or missing or empty while the
    files beside it show that a search ran there (opening it would start a search over).

    Raises:
        ConfigError: what is wrong with study.db, and how to recover.
    """
    db = run.study_db
    size = db.stat().st_size if db.exists() else None
    if size:
        problem = _sqlite_problem(db)
        if problem:
            raise ConfigError(f"{db} is damaged ({problem}){_RECOVER}")
        return
    evidence = run.evidence()
    if evidence:
        state = "missing" if size is None else "empty (0 bytes)"
        raise ConfigError(
            f"{db} is {state}, but {', '.join(evidence)} in {run.root} show that a search ran "
            f"there{_RECOVER}"
        )


def open_run_study(run_dir: Path) -> optuna.Study:
    """The study of an existing run directory, wherever its spec.json says it is stored."""
    run = RunDir(run_dir)
    spec = read_json(run.spec)
    storage = spec.get("storage") if isinstance(spec, dict) else None
    if storage is None and not run.study_db.exists() and not run.evidence():
        raise ConfigError(
            f"{run_dir} holds no search (no study.db); give the directory a search wrote, "
            "such as runs/synthetic"
        )
    return open_study(run.root, storage=storage)


def check_study_matches(run: RunDir, study: optuna.Study) -> None:
    """Refuse a study that holds fewer trials than the run's results.json lists: the database
    was replaced by an older copy or another run's, and a search would write over the record.

    Raises:
        ConfigError: the counts, and how to recover.
    """
    results = read_json(run.results)
    listed = results.get("trials") if isinstance(results, dict) else None
    if not isinstance(listed, list):
        return
    held = len(study.get_trials(deepcopy=False))
    if held < len(listed):
        raise ConfigError(
            f"the study of {run.root} holds {held} trial(s), but its results.json lists "
            f"{len(listed)}: the database is older than the run, or another run's{_RECOVER}"
        )


def check_spec(run: RunDir, spec: dict[str, Any]) -> None:
    """Record the search's settings in the run directory, after checking that a search
    already there used the same ones (where they change what a trial's numbers mean).

    Raises:
        ConfigError: the run directory holds a search with other settings.
    """
    old = read_json(run.spec)
    changed = (
        [k for k in SPEC_KEYS if _spec_value(old, k) != _spec_value(spec, k)]
        if isinstance(old, dict)
        else []
    )
    if changed:
        # The settings short enough to show say what they were: --metric accuracy, not macro-f1.
        was = [
            f"--{k.replace('_', '-')} {_spec_value(old, k)} there, {_spec_value(spec, k)} now"
            for k in changed
            if k in SPEC_DEFAULTS
        ]
        raise ConfigError(
            f"{run.root} holds a search with other settings ({', '.join(changed)} "
            + (f"differ: {'; '.join(was)}" if was else "differ")
            + "), so its trials cannot be compared with new ones. Re-run with the "
            "same settings to resume it, or choose another run directory with --out."
        )
    write_json(run.spec, spec, indent=2)


def _spec_value(spec: Any, key: str) -> Any:
    """A spec's setting, or what a spec from before the setting existed meant by none."""
    return spec.get(key, SPEC_DEFAULTS.get(key)) if isinstance(spec, dict) else None


def load_result(run_dir: Path) -> tuple[optuna.Study, list[R.TrialRecord], dict[str, Any]]:
    """The study, its trial records and the saved spec of a run directory (for ``show``)."""
    run = RunDir(run_dir)
    study = open_run_study(run.root)
    spec = read_json(run.spec)
    if not isinstance(spec, dict):
        spec = {}
    return study, R.records_from_study(study), spec
