"""Faults a search must survive: SIGKILL at random moments, two searches on one run directory,
and limits nothing can meet. Writes the BENCHMARKS.md section ``faults``.

    python benchmarks/faults.py [--kills 20] [--trials 8] [--epochs 3] [--seed 0]
        [--work runs/bench-faults] [--no-write]

1. **Kills.** A small search (synthetic data, random strategy) is started and killed with
   SIGKILL a random 0–20 s after it began a training, again and again until ``--kills`` kills
   landed while it ran; then it runs to its end. Between kills the study is read: a completed trial that is no
   longer complete (or whose accuracy changed) counts as lost. A thread reads results.json every
   20 ms the whole time: each read that does not parse, and each that lists fewer completed
   trials than the read before, is counted.
2. **Two searches on one run directory,** started together on one ``--out``, with the same
   watch on results.json; at the end, results.json is compared with the summary ``edgenas show
   --json`` rebuilds from the study.
3. **Impossible limits** (``--max-latency 1us``, ``--max-macs 1k``): the seconds until the search
   is refused, process start-up included.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _section import cpu_name, write_section

MARK = "faults"
EDGENAS = [sys.executable, "-m", "edgenas"]


class Watch:
    """Reads results.json every 20 ms in a thread: reads that fail to parse, and steps back in
    the number of completed trials."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reads = 0
        self.unparsable = 0
        self.backwards = 0
        self.last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                text = self.path.read_text()
            except OSError:  # not written yet
                time.sleep(0.02)
                continue
            self.reads += 1
            try:
                complete = sum(t["state"] == "complete" for t in json.loads(text)["trials"])
            except (ValueError, KeyError, TypeError):
                self.unparsable += 1
            else:
                self.backwards += complete < self.last
                self.last = max(self.last, complete)
            time.sleep(0.02)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def completed(run: Path) -> dict[int, float]:
    """Trial number → accuracy of every completed trial, read from the study."""
    from optuna.trial import TrialState

    from edgenas.study import open_study

    if not (run / "study.db").exists():
        return {}
    study = open_study(run)
    return {
        t.number: float(t.user_attrs.get("accuracy", float("nan")))
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    }


def training(run: Path, proc: subprocess.Popen[bytes], patience: float = 300.0) -> None:
    """Wait until a trial of the search in ``run`` is RUNNING (or the process ended)."""
    from optuna.trial import TrialState

    from edgenas.errors import EdgenasError
    from edgenas.study import open_study

    deadline = time.monotonic() + patience
    while proc.poll() is None and time.monotonic() < deadline:
        if (run / "study.db").exists():
            try:
                states = {t.state for t in open_study(run).get_trials(deepcopy=False)}
            except EdgenasError:  # the study is being created
                states = set()
            if TrialState.RUNNING in states:
                return
        time.sleep(0.2)


def kills(args: argparse.Namespace) -> dict[str, Any]:
    run = Path(args.work) / "killed"
    shutil.rmtree(run, ignore_errors=True)
    budget = args.trials

    def command() -> list[str]:
        return [*EDGENAS, "search", "synthetic", "--strategy", "random", "--trials",
                str(budget), "--epochs", str(args.epochs), "--resolution", "64",
                "--max-depth", "2", "--seed", str(args.seed), "--out", str(run)]  # fmt: skip

    rng = random.Random(args.seed)
    landed = starts = lost = 0
    seen: dict[int, float] = {}
    started = time.monotonic()
    with Watch(run / "results.json") as watch:
        while landed < args.kills:
            starts += 1
            proc = subprocess.Popen(command(), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
            # The kill lands at a random moment once the search trains (start-up alone takes
            # seconds, more on a busy machine): within a training, between two, or while one
            # is recorded.
            training(run, proc)
            time.sleep(rng.uniform(0.0, 20.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                landed += 1
            proc.wait()
            now = completed(run)
            lost += sum(n not in now or now[n] != acc for n, acc in seen.items())
            seen = {**seen, **now}
            print(f"kill {landed}/{args.kills}: {len(now)} trials complete", flush=True)
            if proc.returncode == 0:  # it finished between two kills: a larger budget
                budget += args.trials
        final = subprocess.run(command(), capture_output=True, text=True)
    if final.returncode != 0:
        raise SystemExit(f"the last run failed:\n{final.stderr}")
    now = completed(run)
    lost += sum(n not in now or now[n] != acc for n, acc in seen.items())
    summary = json.loads((run / "results.json").read_text())["summary"]
    return {
        "kills": landed,
        "starts": starts + 1,
        "seconds": time.monotonic() - started,
        "lost": lost,
        "budget": budget,
        "trained": summary["trained"],
        "complete": summary["complete"],
        "interrupted": summary["interrupted"],
        "unparsable": watch.unparsable,
        "backwards": watch.backwards,
        "reads": watch.reads,
    }


def concurrent(args: argparse.Namespace) -> dict[str, Any]:
    run = Path(args.work) / "shared"
    shutil.rmtree(run, ignore_errors=True)
    command = [*EDGENAS, "search", "synthetic", "--strategy", "random", "--epochs",
               str(args.epochs), "--resolution", "64", "--max-depth", "2", "--seed",
               str(args.seed), "--out", str(run)]  # fmt: skip
    with Watch(run / "results.json") as watch:
        procs = [
            subprocess.Popen(
                [*command, "--trials", str(args.trials)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        failed = [err for p in procs for _, err in [p.communicate()] if p.returncode != 0]
    if failed:
        raise SystemExit(f"a concurrent search failed:\n{failed[0]}")
    final = json.loads((run / "results.json").read_text())
    shown = subprocess.run([*EDGENAS, "show", str(run), "--json"], capture_output=True, text=True)
    rebuilt = json.loads(shown.stdout)

    def key(results: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(t["number"], t["state"], t.get("accuracy")) for t in results["trials"]]

    return {
        "trials": len(final["trials"]),
        "trained": final["summary"]["trained"],
        "same_as_study": key(final) == key(rebuilt) and final["best"] == rebuilt["best"],
        "unparsable": watch.unparsable,
        "backwards": watch.backwards,
        "reads": watch.reads,
    }


def impossible(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for option, value in (("--max-latency", "1us"), ("--max-macs", "1k")):
        run = Path(args.work) / f"impossible{option}"
        shutil.rmtree(run, ignore_errors=True)
        t0 = time.monotonic()
        done = subprocess.run(
            [*EDGENAS, "search", "synthetic", option, value, "--trials", "5", "--out", str(run)],
            capture_output=True, text=True, env={**os.environ, "COLUMNS": "400"},
        )  # fmt: skip
        seconds = time.monotonic() - t0
        message = next((ln for ln in done.stderr.splitlines() if ln.startswith("error:")), "")
        out.append({"limit": f"{option} {value}", "seconds": seconds,
                    "refused": done.returncode != 0 and "can meet" in message,
                    "message": message})  # fmt: skip
    return out


def write(args: argparse.Namespace, k: dict[str, Any], c: dict[str, Any],
          refusals: list[dict[str, Any]]) -> str:  # fmt: skip
    goal = lambda ok: "✅" if ok else "❌"  # noqa: E731
    rows = [
        "| measure | figure | goal |",
        "| --- | --- | --- |",
        f"| SIGKILLs that landed while the search ran | {k['kills']} (of {k['starts']} starts) "
        f"| ≥ 20 {goal(k['kills'] >= 20)} |",
        f"| completed trials lost | {k['lost']} | 0 {goal(k['lost'] == 0)} |",
        f"| results.json reads that failed to parse | {k['unparsable']} of {k['reads']} | "
        f"0 {goal(k['unparsable'] == 0)} |",
        f"| results.json reads with fewer completed trials than the read before | "
        f"{k['backwards']} | 0 {goal(k['backwards'] == 0)} |",
        f"| trials a kill interrupted (queued to run again) | {k['interrupted']} | — |",
        f"| trainings completed / budget | {k['complete']} / {k['budget']} | "
        f"= budget {goal(k['complete'] == k['budget'])} |",
        f"| trainings begun in all | {k['trained']} | — |",
        f"| trainings repeated because of the kills (begun − completed) | "
        f"{k['trained'] - k['complete']} | — |",
    ]
    shared = [
        "| measure | figure | goal |",
        "| --- | --- | --- |",
        f"| results.json reads that failed to parse | {c['unparsable']} of {c['reads']} | "
        f"0 {goal(c['unparsable'] == 0)} |",
        f"| reads with fewer completed trials than the read before | {c['backwards']} | "
        f"0 {goal(c['backwards'] == 0)} |",
        f"| final results.json equals the summary rebuilt from the study | "
        f"{'yes' if c['same_as_study'] else 'no'} | yes {goal(c['same_as_study'])} |",
        f"| trainings in the end (budget {args.trials}, shared) | {c['trained']} | — |",
    ]
    limits = ["| limit | refused | seconds to the refusal (start-up included) | goal |",
              "| --- | --- | --- | --- |"]  # fmt: skip
    for r in refusals:
        limits.append(f"| `{r['limit']}` | {'yes' if r['refused'] else 'no'} | "
                      f"{r['seconds']:.1f} | < 30 s {goal(r['refused'] and r['seconds'] < 30)} |")  # fmt: skip
    text = "\n".join([
        "## Faults: SIGKILL, two searches on one run, impossible limits",
        "",
        f"{dt.date.today().isoformat()} · {cpu_name()}, {os.cpu_count()} cores · "
        f"`python benchmarks/faults.py --kills {args.kills} --trials {args.trials} "
        f"--epochs {args.epochs} --seed {args.seed}` · one run, {k['seconds'] / 60:.0f} min "
        "of kills",
        "",
        f"A search (synthetic data, random strategy, {args.epochs} "
        f"epoch{'' if args.epochs == 1 else 's'} at 64 px, a budget "
        f"of {args.trials} trainings, raised by as many whenever it finished between two kills) "
        "killed with SIGKILL a random 0–20 s after it began a training, again and again, then run to its end; a "
        "thread read results.json every 20 ms throughout. A completed trial is lost when a "
        "later read of the study no longer holds it complete with the same accuracy.",
        "",
        *rows,
        "",
        "Two searches started together on one `--out`, sharing its budget:",
        "",
        *shared,
        "",
        "Limits that no architecture of the space meets:",
        "",
        *limits,
        "",
        f"The refusal reads: `{refusals[0]['message']}`" if refusals else "",
    ])  # fmt: skip
    if not args.no_write:
        write_section(MARK, text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20, help="SIGKILLs that must land (≥ 20)")
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="runs/bench-faults")
    p.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    args = p.parse_args()
    k = kills(args)
    print(json.dumps(k), flush=True)
    c = concurrent(args)
    print(json.dumps(c), flush=True)
    refusals = impossible(args)
    print(json.dumps(refusals), flush=True)
    print(write(args, k, c, refusals))


if __name__ == "__main__":
    main()
