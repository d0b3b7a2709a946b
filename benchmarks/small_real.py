"""The greedy search on real weights and real data (search_spaces/small_real_greedy.yaml), with each trial's cost.

Writes the data set if missing (scripts/sklearn_digits.py → data/sklearn_digits), then runs the search as
``eaglesearch run SPACE --executor inline`` in a child process — the way a user runs it, live progress included —
while a monitor samples that process every 0.5 s from ``/proc``: resident memory (RSS) and CPU time (user + system).
Each progress line ``… <trial> started`` / ``finished`` opens and closes a trial's window, so every trial gets

* **wall s**: wall-clock time of the trial (on a shared machine this includes waiting for a core);
* **CPU s**: CPU time the process spent in it (what a dedicated machine needs, divided by the cores it keeps busy);
* **peak RSS MB**: the highest RSS sampled during it (the process's, so it includes SmolLM2 and the libraries).

The search's ranked table (``reports/<search>/leaderboard.md``, with the answer prior and 95% intervals) is printed
after the per-trial costs; ``--json`` writes both.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/small_real.py [--space search_spaces/small_real_greedy.yaml]
        [--root /tmp/small_real] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
EVENT = re.compile(r"^\[[^\]]*\] round (\d+) · (\S+) (started|finished|failed|cached)")


@dataclass
class TrialCost:
    label: str
    round: int
    status: str = "running"
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    _t0: float = field(default=0.0, repr=False)
    _cpu0: float = field(default=0.0, repr=False)


def proc_sample(pid: int) -> tuple[float, float]:
    """(CPU seconds so far, RSS in MB) of ``pid`` from /proc; (0, 0) once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0, 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS, rss_pages * PAGE / 2**20


def run_with_costs(space: Path, root: Path) -> tuple[int, list[TrialCost], float, float]:
    """Run the search in ``root``; (exit code, per-trial costs, total wall s, total CPU s)."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db",
               EAGLESEARCH_HOME=str(root / ".eaglesearch"), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", "eaglesearch.cli", "run", str(space.resolve()), "--executor", "inline"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    trials: dict[str, TrialCost] = {}
    peak = {"current": 0.0}
    done = threading.Event()
    last_cpu = {"value": 0.0}

    def monitor() -> None:
        while not done.is_set():
            cpu, rss = proc_sample(proc.pid)
            if cpu:
                last_cpu["value"] = cpu
            peak["current"] = max(peak["current"], rss)
            for trial in trials.values():
                if trial.status == "running":
                    trial.peak_rss_mb = max(trial.peak_rss_mb, rss)
            time.sleep(0.5)

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)  # the search's own live progress
        match = EVENT.match(line.strip())
        if not match:
            continue
        round_, label, event = int(match[1]), match[2], match[3]
        cpu, _ = proc_sample(proc.pid)
        now = time.perf_counter()
        if event == "started":
            trials[label] = TrialCost(label=label, round=round_, _t0=now, _cpu0=cpu)
        elif label in trials:
            trial = trials[label]
            trial.status, trial.wall_s, trial.cpu_s = event, now - trial._t0, cpu - trial._cpu0
    code = proc.wait()
    done.set()
    watcher.join()
    return code, list(trials.values()), time.perf_counter() - t0, last_cpu["value"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=REPO / "search_spaces" / "small_real_greedy.yaml")
    parser.add_argument("--root", type=Path, default=Path("/tmp/small_real"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from eaglesearch.data.digits import write_digits

    write_digits(REPO / "data" / "sklearn_digits")
    args.root.mkdir(parents=True, exist_ok=True)
    code, trials, wall, cpu = run_with_costs(args.space, args.root)
    print(f"\n{'trial':<48} {'round':>5} {'status':>9} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12}")
    for t in trials:
        print(f"{t.label:<48} {t.round:>5} {t.status:>9} {t.wall_s:>8.0f} {t.cpu_s:>8.0f} {t.peak_rss_mb:>12.0f}")
    print(f"search: exit {code}, {len(trials)} trials, wall {wall / 60:.1f} min, CPU {cpu / 60:.1f} min "
          f"(on a dedicated machine about CPU / cores kept busy)")
    name = next((line.split(":", 1)[1].strip() for line in args.space.read_text().splitlines()
                 if line.startswith("name:")), args.space.stem)
    table = REPO / "reports" / name / "leaderboard.md"
    if table.is_file():
        print(f"\n{table}:\n{table.read_text()}")
    if args.json:
        args.json.write_text(json.dumps({"exit": code, "wall_s": wall, "cpu_s": cpu,
                                         "trials": [{k: v for k, v in asdict(t).items() if not k.startswith("_")}
                                                    for t in trials]}, indent=1))


if __name__ == "__main__":
    main()
