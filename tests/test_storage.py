"""``--storage URL``: a search whose study lives in a real PostgreSQL server on loopback, and
clear errors for a database that cannot be used.

The server is a throwaway one (initdb in a temporary folder, trust authentication, a free
port on 127.0.0.1). Without PostgreSQL's binaries the PostgreSQL test is skipped, unless
EDGENAS_REQUIRE_POSTGRES=1 (as ``.ci/run`` sets) makes that a failure.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli import QUICK, run_cli


def _binary(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not (initdb and pg_ctl):
        if os.environ.get("EDGENAS_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL's initdb and pg_ctl are not installed")
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed")
    # PostgreSQL refuses to run as root: run it as the postgres user then, in a folder of its
    # own (pytest's temporary folders are private to the user running the tests).
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="edgenas-pg-"))
    base.chmod(0o777)
    data = base / "data"
    port = _free_port()
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)  # fmt: skip
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data}"
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-o", options, "-w", "-l",
                    str(data / "log"), "start"], check=True, capture_output=True)  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_search_keeps_its_study_in_postgresql(postgres: str, tmp_path: Path) -> None:
    run = tmp_path / "pg-run"
    args = ["search", "synthetic", "--trials", "2", "--strategy", "random", "--out", str(run),
            "--storage", postgres, *QUICK]  # fmt: skip
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert not (run / "study.db").exists()  # the study is in the server
    spec = json.loads((run / "spec.json").read_text())
    assert spec["storage"] == postgres
    results = json.loads((run / "results.json").read_text())
    assert results["summary"]["trained"] == 2
    # show finds the study through spec.json; running again resumes it in the server.
    shown = run_cli("show", str(run), "--json")
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["trials"]) == 2
    again = run_cli(*args[:3], "3", *args[4:])
    assert again.returncode == 0, again.stderr
    import optuna

    study = optuna.load_study(study_name=f"edgenas:{run.name}", storage=postgres)
    assert sum(t.user_attrs.get("trained", False) for t in study.trials) == 3
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))


def test_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://nobody:secret@127.0.0.1:{_free_port()}/edgenas"
    proc = run_cli("search", "synthetic", "--trials", "1", "--out", str(tmp_path / "r"),
                   "--storage", url, *QUICK)  # fmt: skip
    assert proc.returncode == 2
    assert "cannot reach the study database" in proc.stderr
    assert "secret" not in proc.stderr and "Traceback" not in proc.stderr


def test_bad_storage_url_and_missing_driver_are_named(tmp_path: Path) -> None:
    proc = run_cli("search", "synthetic", "--trials", "1", "--out", str(tmp_path / "r"),
                   "--storage", "not a url", *QUICK)  # fmt: skip
    assert proc.returncode == 2 and "is not a database URL" in proc.stderr
    proc = run_cli("search", "synthetic", "--trials", "1", "--out", str(tmp_path / "r2"),
                   "--storage", "mysql+nosuchdriver://h/db", *QUICK)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "no driver" in proc.stderr and "edgenas[postgres]" in proc.stderr
