"""Factory-scale data: 127,000 JPEG images in 23 imbalanced classes, decoded once into a
memory-mapped cache that every process shares.

Generates the data set (not committed: it is made again from the seed), then measures, each
in fresh processes:

- ``decode``: the time to decode every image into the cache at 32 (the normalisation
  statistics), 96 and 224 px, images per second, and the cache's size on disk;
- ``load``: the time to find and check every file in a fresh process, with no image checks
  kept in the cache and with them kept (what a worker or a resumed search loads);
- ``memory``: a real search (``edgenas.search``, two trainings, one epoch each) on the whole
  set and on a 20,000-image subset, at 96 and 224 px, in one process and with 2 local
  workers. A sampler reads ``/proc/PID/smaps_rollup`` of the search process and its workers
  every 0.2 s and keeps each one's peak RSS, PSS and private (anonymous) memory. Pages of the
  mapped cache are the operating system's page cache, shared by every process that maps the
  file (PSS splits them among those processes) and dropped under memory pressure; private
  memory is what a process owns alone and cannot give back. The growth from the subset to
  the whole set, per image, is the figure the goal is about;
- ``epoch``: seconds per training epoch at 96 px on the 20,000-image subset, side by side,
  interleaved: the code at ``--before`` (pixels decoded into the process's memory, the split
  copied before training), and the current code with the pixels in memory and mapped from
  the cache.

    python benchmarks/factory_scale.py [--parts generate,decode,load,memory,epoch]
        [--images 127000] [--subset 20000] [--work runs/factory] [--before REV] [--repeats 3]

The data set and the caches take about 30 GB under ``--work``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
from _section import cpu_name, git_commit, write_section
from PIL import Image, ImageDraw, ImageFilter

MARK = "factory_scale"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "factory_scale.json"
CLASSES = 23
SIDE = 256
LARGEST, SMALLEST = 0.60, 0.005
# The network every epoch is timed with: the demo's baseline, at the timed resolution.
EPOCH_MODEL = "mobilenetv2:0.5"
EPOCH_RESOLUTION = 96


# -- the data set --------------------------------------------------------------------------------


def class_counts(images: int) -> list[int]:
    """One class 60%, the smallest 0.5%, the 21 between on a geometric scale."""
    rest = 1.0 - LARGEST - SMALLEST
    # shares s_k = SMALLEST * q**(22 - k) for k = 1..21, summing to ``rest``: solve for q.
    low, high = 1.0, 2.0
    for _ in range(100):
        q = (low + high) / 2
        total = sum(SMALLEST * q**j for j in range(1, 22))
        low, high = (q, high) if total < rest else (low, q)
    shares = [LARGEST] + [SMALLEST * q ** (22 - k) for k in range(1, 22)] + [SMALLEST]
    counts = [round(s * images) for s in shares]
    counts[0] += images - sum(counts)
    return counts


def _draw(task: tuple[int, int, int, str]) -> None:
    """One 256×256 RGB part photo: a lit metal-like surface, and the class's defect."""
    _, label, seed, path = task
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) / SIDE
    angle = rng.uniform(0, 2 * np.pi)
    light = 120 + 60 * (np.cos(angle) * x + np.sin(angle) * y) + rng.normal(0, 6, (SIDE, SIDE))
    tint = rng.uniform(0.85, 1.15, size=3)
    pixels = np.clip(light[..., None] * tint, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if label:  # class 0 is the good part; each defect class draws its own mark
        draw = ImageDraw.Draw(image)
        cx, cy = rng.uniform(40, SIDE - 40, size=2)
        size = 6 + 2 * (label % 7) + rng.uniform(0, 8)
        shade = int(40 + 8 * (label % 5))
        kind = label % 4
        if kind == 0:
            draw.ellipse((cx - size, cy - size, cx + size, cy + size), fill=(shade,) * 3)
        elif kind == 1:
            turn = rng.uniform(0, np.pi)
            dx, dy = 3 * size * np.cos(turn), 3 * size * np.sin(turn)
            draw.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=(shade,) * 3, width=1 + label % 3)
        elif kind == 2:
            draw.rectangle(
                (cx - size, cy - size / 2, cx + size, cy + size / 2), outline=(shade,) * 3
            )
        else:
            for _ in range(3 + label % 5):
                px, py = cx + rng.normal(0, size), cy + rng.normal(0, size)
                draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=(255 - shade,) * 3)
        image = image.filter(ImageFilter.GaussianBlur(0.6))
    image.save(path, quality=90)


def generate(work: Path, images: int, subset: int, seed: int) -> dict[str, Any]:
    folder = work / "images"
    marker = work / "generated.json"
    wanted = {"images": images, "classes": CLASSES, "side": SIDE, "seed": seed, "subset": subset}
    if marker.is_file() and json.loads(marker.read_text()).get("wanted") == wanted:
        return json.loads(marker.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    counts = class_counts(images)
    rng = np.random.default_rng(seed)
    tasks, rows = [], []
    for label, count in enumerate(counts):
        (folder / f"class_{label:02d}").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            name = f"class_{label:02d}/{i:06d}.jpg"
            tasks.append((len(tasks), label, int(rng.integers(2**31)), str(folder / name)))
            rows.append((f"images/{name}", f"class_{label:02d}"))
    started = time.perf_counter()
    with Pool(os.cpu_count()) as pool:
        for _ in pool.imap_unordered(_draw, tasks, chunksize=256):
            pass
    seconds = time.perf_counter() - started
    order = rng.permutation(len(rows))
    # The subset keeps the classes' shares (rounded, at least 3 images each).
    chosen: list[int] = []
    labels = np.array([label for _, label, _, _ in tasks])
    for label, count in enumerate(counts):
        members = [i for i in order if labels[i] == label]
        chosen += members[: max(3, round(count * subset / images))]
    for name, picked in (("all.csv", range(len(rows))), ("subset.csv", sorted(chosen))):
        with (work / name).open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["path", "label"])
            writer.writerows(rows[i] for i in picked)
    size = sum(p.stat().st_size for p in folder.rglob("*.jpg"))
    info = {
        "wanted": wanted,
        "counts": counts,
        "subset_images": len(chosen),
        "jpeg_bytes": size,
        "generate_seconds": seconds,
    }
    marker.write_text(json.dumps(info, indent=1))
    return info


# -- measuring processes -------------------------------------------------------------------------


def _rollup(pid: int) -> dict[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            values[key.strip()] = int(parts[0]) * 1024
    return values


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            found += [int(c) for c in text]
    except OSError:
        pass
    return found


def _role(pid: int, root: int) -> str | None:
    if pid == root:
        return "search"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    if "resource_tracker" in command or "semaphore_tracker" in command:
        return None
    return "worker" if "multiprocessing" in command or "spawn" in command else None


class Sampler:
    """Peak RSS, PSS and private (anonymous) memory of a process and its workers."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peaks: dict[int, dict[str, Any]] = {}
        self.total_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = [self.pid]
            queue = [self.pid]
            while queue:
                children = _children(queue.pop())
                pids += children
                queue += children
            pss = 0
            for pid in pids:
                role = _role(pid, self.pid)
                values = _rollup(pid) if role else None
                if not values:
                    continue
                pss += values.get("Pss", 0)
                peak = self.peaks.setdefault(pid, {"role": role, "rss": 0, "pss": 0, "private": 0})
                peak["rss"] = max(peak["rss"], values.get("Rss", 0))
                peak["pss"] = max(peak["pss"], values.get("Pss", 0))
                peak["private"] = max(peak["private"], values.get("Anonymous", 0))
            self.total_pss = max(self.total_pss, pss)
            self._stop.wait(0.2)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        workers = [p for p in self.peaks.values() if p["role"] == "worker"]
        search = next((p for p in self.peaks.values() if p["role"] == "search"), None)
        return {"search": search, "workers": workers, "total_pss": self.total_pss}


def run_python(code: str, *, env: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """Run ``code`` in a fresh interpreter, sampling its memory; its stdout and the peaks."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    sampler = Sampler(process.pid)
    out, err = process.communicate()
    peaks = sampler.stop()
    if process.returncode != 0:
        raise SystemExit(f"a measured process failed:\n{err[-3000:]}")
    return out, peaks


# -- the parts -----------------------------------------------------------------------------------


def decode(work: Path) -> dict[str, Any]:
    results = {}
    for resolution in (32, 96, 224):
        out, peaks = run_python(
            f"""
            import json, time
            from pathlib import Path
            from edgenas.data import load_dataset
            started = time.perf_counter()
            data = load_dataset({str(work / "all.csv")!r}, cache_dir=Path({str(work / "cache")!r}))
            loaded = time.perf_counter() - started
            path = data.cache_file({resolution})
            if path.exists():
                path.unlink()
            started = time.perf_counter()
            data.images({resolution})
            print(json.dumps({{"load_s": loaded, "decode_s": time.perf_counter() - started,
                              "images": len(data), "bytes": path.stat().st_size}}))
            """
        )
        record = json.loads(out.strip().splitlines()[-1])
        record["images_per_s"] = record["images"] / record["decode_s"]
        record["peak"] = peaks["search"]
        results[str(resolution)] = record
        print(f"decode {resolution}px: {record}", flush=True)
    return results


def load(work: Path, repeats: int) -> dict[str, Any]:
    """Seconds to find and check every file in a fresh process: with no image checks kept in
    the cache (the first load of a run), and with them kept (a worker, a resumed search);
    interleaved, ``repeats`` of each."""
    code = f"""
        import json, time
        from pathlib import Path
        from edgenas.data import load_dataset
        started = time.perf_counter()
        data = load_dataset({str(work / "all.csv")!r}, cache_dir=Path({str(work / "cache")!r}))
        print(json.dumps({{"load_s": time.perf_counter() - started, "images": len(data)}}))
        """
    runs: dict[str, list[float]] = {"first": [], "kept": []}
    for _ in range(repeats):
        for kind in runs:
            if kind == "first":
                for table in (work / "cache").glob("probes-*.json"):
                    table.unlink()
            out, _ = run_python(code)
            record = json.loads(out.strip().splitlines()[-1])
            runs[kind].append(record["load_s"])
            print(f"load ({kind}): {record}", flush=True)
    return {"runs": runs, "images": record["images"]}


def memory(work: Path) -> list[dict[str, Any]]:
    runs = []
    for resolution in (96, 224):
        for data in ("subset", "all"):
            for workers in (1, 2):
                out = work / "runs" / f"{data}-{resolution}-{workers}"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                (out / "cache").symlink_to(work / "cache")  # the caches decoded once
                _, peaks = run_python(
                    f"""
                    import edgenas
                    edgenas.search({str(work / (data + ".csv"))!r}, out={str(out)!r}, trials=2,
                        epochs=1, data_fraction=0.02, val_fraction=0.05, holdout_fraction=0.05,
                        strategy="random", workers={workers}, seed=0,
                        space=edgenas.edge_space(resolutions="{resolution}", max_depth=1))
                    """
                )
                # peaks["workers"] lists the worker processes' peaks (none for --workers 1).
                record = {"data": data, "resolution": resolution, **peaks}
                runs.append(record)
                print(f"memory {data} {resolution}px workers={workers}: {record}", flush=True)
    return runs


def epoch(work: Path, before: str, repeats: int) -> dict[str, Any]:
    from workers import checkout  # the same temporary worktree as the workers benchmark

    script = f"""
        import json, sys, torch
        from pathlib import Path
        from edgenas.arch import baseline, build_model
        from edgenas.data import load_dataset
        from edgenas.train import Fidelity, TrainConfig, fit
        cache = sys.argv[1] if len(sys.argv) > 1 else None
        data = load_dataset({str(work / "subset.csv")!r},
                            **({{"cache_dir": Path(cache)}} if cache else {{}}))
        data.images({EPOCH_RESOLUTION})
        genotype = baseline({EPOCH_MODEL!r}, resolution={EPOCH_RESOLUTION})
        torch.manual_seed(0)
        model = build_model(genotype, data.channels, data.num_classes, data.mean, data.std)
        result = fit(model, data, Fidelity(epochs=1), resolution={EPOCH_RESOLUTION}, seed=0,
                     config=TrainConfig(device="cpu"))
        print(json.dumps({{"seconds": result.seconds, "images": result.train_images}}))
    """
    timings: dict[str, list[float]] = {
        "before, in memory": [],
        "now, in memory": [],
        "now, mapped": [],
    }
    images = 0
    with checkout(before) as old_env:
        for _ in range(repeats):
            for name in timings:
                env = old_env if name.startswith("before") else None
                argv = [str(work / "cache")] if name.endswith("mapped") else []
                process = subprocess.run(
                    [sys.executable, "-c", textwrap.dedent(script), *argv],
                    capture_output=True, text=True, env=env, cwd=ROOT, check=False,
                )  # fmt: skip
                if process.returncode != 0:
                    raise SystemExit(f"an epoch run failed:\n{process.stderr[-3000:]}")
                record = json.loads(process.stdout.strip().splitlines()[-1])
                timings[name].append(record["seconds"])
                images = record["images"]
                print(f"epoch {name}: {record}", flush=True)
    return {"timings": timings, "train_images": images, "before": git_commit(before)}


# -- the section ---------------------------------------------------------------------------------


def _mb(count: float) -> str:
    return f"{count / 2**20:,.0f} MiB"


def section(results: dict[str, Any], command: str) -> str:
    info = results["generated"]
    lines = [
        "## Factory-scale data: 127,000 images, memory-mapped cache",
        "",
        f"Machine: {results['machine']}, {results['cores']} cores, "
        f"{results['memory_gib']:.0f} GiB; {results['date']}. Commands: `{command}`.",
        "",
        f"A generated set of {sum(info['counts']):,} JPEG images, {SIDE}×{SIDE} RGB, "
        f"{CLASSES} classes (largest {info['counts'][0]:,} images, smallest "
        f"{info['counts'][-1]:,}), {info['jpeg_bytes'] / 1e9:.1f} GB of files; a stratified "
        f"subset of {info['subset_images']:,}.",
        "",
    ]
    if "decode" in results:
        lines += [
            "### Decoding into the cache (once per resolution, threads on every core)",
            "",
            "| resolution | decode | images/s | cache on disk | peak RSS | peak private |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for resolution, record in results["decode"].items():
            lines.append(
                f"| {resolution} px | {record['decode_s']:.0f} s | "
                f"{record['images_per_s']:,.0f} | {record['bytes'] / 1e9:.2f} GB | "
                f"{_mb(record['peak']['rss'])} | {_mb(record['peak']['private'])} |"
            )
        load = results["decode"]["32"]["load_s"]
        lines += [
            "",
            f"Finding and checking the {sum(info['counts']):,} files took {load:.0f} s.",
            "",
        ]
    if "load" in results:
        runs = results["load"]["runs"]
        first, kept = statistics.median(runs["first"]), statistics.median(runs["kept"])
        lines += [
            "### Loading the data again (a worker, a resumed search)",
            "",
            "Finding and checking every file in a fresh process, with no image checks kept in "
            "the cache and with them kept (files unchanged since are not opened again); "
            f"{len(runs['first'])} runs of each, interleaved.",
            "",
            "| checks kept | median load | runs | ratio |",
            "| --- | ---: | --- | ---: |",
            f"| no (first load) | {first:.1f} s | "
            f"{', '.join(f'{x:.1f}' for x in runs['first'])} | 1.00 |",
            f"| yes | {kept:.1f} s | {', '.join(f'{x:.1f}' for x in runs['kept'])} | "
            f"{kept / first:.2f} |",
            "",
        ]
    if "memory" in results:
        lines += [
            "### Memory of a search (two trainings of one epoch, 2% of the training split)",
            "",
            "Peaks per process. RSS counts the mapped cache pages a process touched; PSS "
            "shares them among the processes mapping them; private is anonymous memory, "
            "the process's own.",
            "",
            "| data | resolution | processes | search RSS | search PSS | search private "
            "| each worker RSS / PSS / private | all PSS |",
            "| --- | --- | --- | ---: | ---: | ---: | --- | ---: |",
        ]
        for run in results["memory"]:
            search = run["search"]
            workers = " · ".join(
                f"{_mb(w['rss'])} / {_mb(w['pss'])} / {_mb(w['private'])}" for w in run["workers"]
            )
            count = info["subset_images"] if run["data"] == "subset" else sum(info["counts"])
            lines.append(
                f"| {count:,} images | {run['resolution']} px | "
                f"{'search + 2 workers' if run['workers'] else 'search only'} | "
                f"{_mb(search['rss'])} | {_mb(search['pss'])} | {_mb(search['private'])} | "
                f"{workers or '–'} | {_mb(run['total_pss'])} |"
            )
        total = sum(info["counts"])
        lines += [
            "",
            *growth(results),
            f"- Before, each process decoded the whole set into its own memory: "
            f"{total * 3 * 224 * 224 / 2**30:.1f} GiB per process at 224 px, on a machine of "
            f"{results['memory_gib']:.0f} GiB.",
        ]
    if "epoch" in results:
        timings = results["epoch"]["timings"]
        base = statistics.median(timings["before, in memory"])
        lines += [
            "",
            f"### Seconds per epoch at {EPOCH_RESOLUTION} px on the subset",
            "",
            f"{EPOCH_MODEL} at {EPOCH_RESOLUTION} px, one epoch over "
            f"{results['epoch']['train_images']:,} training images and the validation split, "
            f"all threads; {len(timings['now, mapped'])} runs of each, interleaved. `before` is "
            f"commit {results['epoch']['before'][:10]}.",
            "",
            "| pixels | median s/epoch | runs | ratio to before |",
            "| --- | ---: | --- | ---: |",
        ]
        for name, values in timings.items():
            median = statistics.median(values)
            runs = ", ".join(f"{v:.1f}" for v in values)
            lines.append(f"| {name} | {median:.1f} | {runs} | {median / base:.2f} |")
    return "\n".join(lines)


def growth(results: dict[str, Any]) -> list[str]:
    """Private memory per image added, from the subset to the whole set, at 224 px."""
    info = results["generated"]
    added = sum(info["counts"]) - info["subset_images"]
    lines = []
    for workers in (1, 2):
        runs = {
            r["data"]: r
            for r in results["memory"]
            if r["resolution"] == 224 and len(r["workers"]) == (0 if workers == 1 else workers)
        }
        if set(runs) != {"subset", "all"}:
            continue
        roles = [("search", runs["all"]["search"], runs["subset"]["search"])]
        roles += [
            (f"worker {i + 1}", big, small)
            for i, (big, small) in enumerate(
                zip(runs["all"]["workers"], runs["subset"]["workers"], strict=False)
            )
        ]
        for role, big, small in roles:
            grown = big["private"] - small["private"]
            lines.append(
                f"- 224 px, {'one process' if workers == 1 else '2 workers'}, {role}: private "
                f"memory {_mb(small['private'])} → {_mb(big['private'])}, "
                f"{grown / added:,.0f} bytes per added image (a decoded image is "
                f"{3 * 224 * 224:,} bytes)."
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="generate,decode,load,memory,epoch")
    parser.add_argument("--images", type=int, default=127_000)
    parser.add_argument("--subset", type=int, default=20_000)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "factory")
    parser.add_argument("--before", default="HEAD", help="the revision the epoch part compares")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    saved = args.work / "results.json"
    results: dict[str, Any] = json.loads(saved.read_text()) if saved.is_file() else {}
    results["generated"] = generate(args.work, args.images, args.subset, args.seed)
    results.update(
        machine=cpu_name(),
        cores=os.cpu_count(),
        memory_gib=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        date=dt.date.today().isoformat(),
    )
    if "decode" in parts:
        results["decode"] = decode(args.work)
    if "load" in parts:
        results["load"] = load(args.work, args.repeats)
    if "memory" in parts:
        results["memory"] = memory(args.work)
    if "epoch" in parts:
        results["epoch"] = epoch(args.work, args.before, args.repeats)
    command = ("python benchmarks/factory_scale.py " + " ".join(sys.argv[1:])).strip()
    if parts & {"decode", "load", "memory", "epoch"}:
        # The parts may run separately: every command that measured something is listed.
        done = [c for c in results.get("commands", []) if c != command]
        results["commands"] = [*done, command]
    saved.write_text(json.dumps(results, indent=1))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))  # the record kept with the repository
    text = section(results, "`; `".join(results.get("commands", [command])))
    write_section(MARK, text)
    print(text)


if __name__ == "__main__":
    main()
