"""CPU seconds the command line costs before it does anything: ``eaglesearch --help`` and ``eaglesearch validate``
of one shipped space, beside the figure of the eager import path they used to take.

Each command runs in a fresh child process and is charged its user + system CPU time (``resource.getrusage`` of
the children), which unlike wall time hardly depends on what else the machine runs. The baseline is the eager path
``validate`` took before its imports were made lazy: the torch modules of every expert and fusion, the model
builder and the memory plan (``import eaglesearch.model.build, eaglesearch.trial.memory``), followed by the same
``validate``, in one process. Issue 23's target: ``validate`` ≤ 2 s of CPU on the 2-core development box.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/startup.py [--space search_spaces/demo_greedy.yaml] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = "import sys; from eaglesearch.cli import main; sys.argv = ['eaglesearch', *sys.argv[1:]]; main()"
EAGER = "import eaglesearch.model.build, eaglesearch.trial.memory, eaglesearch.model.fusions; " + CLI


def cpu_seconds(code: str, *args: str) -> float:
    """User + system CPU of one child ``python -c code args``, which must exit 0."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
               OMP_WAIT_POLICY="PASSIVE")
    subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="search_spaces/demo_greedy.yaml")
    parser.add_argument("--repeat", type=int, default=3, help="runs per command; the median is reported")
    args = parser.parse_args()
    cases = [("--help", CLI, ("--help",)), ("validate", CLI, ("validate", args.space)),
             ("validate, eager imports (before)", EAGER, ("validate", args.space))]
    print(f"CPU seconds per command (median of {args.repeat} fresh processes; user + system)")
    for label, code, argv in cases:
        runs = [cpu_seconds(code, *argv) for _ in range(args.repeat)]
        print(f"  {label:<34} {statistics.median(runs):5.2f} s   runs: {', '.join(f'{r:.2f}' for r in runs)}")


if __name__ == "__main__":
    main()
