"""What each vision expert and each fusion costs at tiny scale: time, FLOPs, parameters and peak memory.

Every configuration is random-init, tiny preset, fed a batch (default 8) of random uint8 images at 256 px, with
torch pinned to ``--threads`` (default 2) threads and ``OMP_WAIT_POLICY=PASSIVE`` set before torch is imported.

1. **Experts**: every registered family, at its tiny default resolution, as the model uses it:
   ``expert.grid_tokens(images, grid=8)`` (resize + normalise + encoder + resampling onto the 8×8 grid).
2. **Fusions**: all five on clip@128 + convnext@256 and on clip@128 + convnext@256 + sam@256 (grid 8): the whole
   vision side as ``build_eagle`` wires it — experts, ``build_fusion(spec, experts, lm_dim=128)`` and the shared
   ``mlp2x_gelu`` projector (identity when the fusion owns the projection) — i.e. ``EagleModel.encode_images``.

Per configuration, in its own fresh process (``--child``) so one configuration's memory cannot pollute another's:

* **fwd+bwd ms**: ``out.sum().backward()`` with gradients set to ``None`` before each rep (so every rep allocates
  them, as training with ``zero_grad(set_to_none=True)`` does); min and median of ``--reps`` after ``--warmup``.
* **fwd ms**: forward only, ``eval()`` under ``torch.no_grad()``; min and median of ``--reps``.
* **GFLOPs/img**: forward FLOPs of one image, ``eaglesearch.model.cost.count_flops`` (matmuls, convs, attention).
* **peak MB** (peak memory): the peak resident set size (RSS) of the process during the timed fwd+bwd reps minus
  its RSS just before them, i.e. the extra memory one training step of this configuration needs on top of its
  weights, inputs and the loaded libraries (activations kept for backward, gradients, temporaries). Before the
  timed reps the warm-up's freed memory is handed back to the OS (``malloc_trim``), RSS is read from
  ``/proc/self/statm`` and the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``); after them the peak is
  ``VmHWM`` (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` where the mark cannot be reset — it then also covers
  the warm-up, which runs the same step).
* **×clip**: median fwd+bwd time over clip alone's (section 1) from the same run; the machine is noisy, so ratios
  within one run are the honest comparison, absolute milliseconds are not.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/experts.py [--reps 10] [--batch 8] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from torch import Tensor, nn

from eaglesearch.model.cost import count_flops
from eaglesearch.model.experts import build_expert, expert_names, resolve_expert
from eaglesearch.model.fusions import FUSIONS, build_fusion
from eaglesearch.model.projector import build_projector
from eaglesearch.model.validate import validate_model
from eaglesearch.spec import ExpertSpec, ModelSpec

GRID, LM_DIM, IMAGE_SIZE = 8, 128, 256
EXPERT_SETS: list[list[tuple[str, int]]] = [[("clip", 128), ("convnext", 256)],
                                            [("clip", 128), ("convnext", 256), ("sam", 256)]]
Row = dict[str, Any]


# ------------------------------------------------------------------------------------------ in the child process

def rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def reset_peak() -> bool:
    """Hand freed heap memory back to the OS and reset the kernel's peak-RSS mark; False where that is refused."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_kb(was_reset: bool) -> int:
    if was_reset:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux


def timed(fn: Callable[[], object], reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def build(config: Row) -> tuple[nn.Module, Callable[[Tensor], Tensor], Row]:
    """The module to measure, the function from uint8 images to its output, and what describes it."""
    if config["kind"] == "expert":
        expert = build_expert(resolve_expert(ExpertSpec(name=config["name"])))
        info = {"resolution": expert.resolution, "native_grid": expert.native_grid,
                "grid_channels": expert.grid_channels(GRID), "tokens": expert.token_count(GRID)}
        return expert, lambda x: expert.grid_tokens(x, GRID), info
    spec = ModelSpec(experts=tuple(ExpertSpec(name=n, resolution=r) for n, r in config["experts"]), grid=GRID,
                     fusion=config["fusion"])
    validate_model(spec)
    experts = [build_expert(resolve_expert(e)) for e in spec.experts]  # same order as build_eagle
    fusion = build_fusion(spec, experts, LM_DIM)
    projector = nn.Identity() if fusion.owns_projection else build_projector(spec.projector, fusion.out_dim, LM_DIM)
    info = {"tokens": fusion.num_tokens, "fusion_params": sum(p.numel() for p in fusion.parameters()),
            "projector_params": sum(p.numel() for p in projector.parameters())}
    return nn.ModuleList([*experts, fusion, projector]), lambda x: projector(fusion(experts, x, GRID)), info


def measure(config: Row, reps: int, warmup: int, batch: int, threads: int) -> Row:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    module, run, info = build(config)
    images = torch.randint(0, 256, (batch, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    params = list(module.parameters())

    def step() -> None:
        for p in params:
            p.grad = None
        run(images).sum().backward()

    module.train()
    for _ in range(warmup):
        step()
    for p in params:
        p.grad = None
    gc.collect()
    was_reset = reset_peak()
    before = rss_kb()
    fwd_bwd = timed(step, reps)
    peak = peak_kb(was_reset)
    module.eval()
    with torch.no_grad():
        fwd = timed(lambda: run(images), reps)
    flops = count_flops(run, images[:1])
    return {**config, **info, "params": sum(p.numel() for p in params), "flops_per_image": flops,
            "fwd_bwd_ms": fwd_bwd, "fwd_ms": fwd, "rss_before_kb": before, "peak_rss_kb": peak,
            "peak_increase_mb": (peak - before) / 1024, "peak_mark_reset": was_reset}


# ------------------------------------------------------------------------------------------ in the parent process

def run_child(config: Row, args: argparse.Namespace) -> Row:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(config), "--reps", str(args.reps),
           "--warmup", str(args.warmup), "--batch", str(args.batch), "--threads", str(args.threads)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    if done.returncode != 0:
        return {**config, "error": (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]}
    row = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("fwd_bwd_ms", "fwd_ms"):
        row[key.replace("_ms", "_min")], row[key.replace("_ms", "_med")] = min(row[key]), statistics.median(row[key])
    return row


def ms(row: Row, key: str) -> str:
    return f"{row[key + '_min']:.1f} / {row[key + '_med']:.1f}"


def ratio(row: Row, base: float | None) -> str:
    return f"{row['fwd_bwd_med'] / base:.2f}" if base else "–"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def expert_table(rows: list[Row], base: float | None) -> str:
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["name"], f"failed: {r['error']}"] + [""] * 8)
            continue
        body.append([r["name"], str(r["resolution"]), f"{r['native_grid']}→{GRID}", str(r["grid_channels"]),
                     f"{r['params']:,}", f"{r['flops_per_image'] / 1e9:.3f}", ms(r, "fwd"), ms(r, "fwd_bwd"),
                     ratio(r, base), f"{r['peak_increase_mb']:.0f}"])
    return table(["expert", "px", "map→grid", "C' on grid", "params", "GFLOPs/img", "fwd ms min / med",
                  "fwd+bwd ms min / med", "×clip", "peak MB"], body)


def fusion_table(rows: list[Row], base: float | None) -> str:
    body = []
    for r in rows:
        label = "+".join(f"{n}@{px}" for n, px in r["experts"])
        if "error" in r:
            body.append([label, r["fusion"], f"failed: {r['error']}"] + [""] * 7)
            continue
        body.append([label, r["fusion"], str(r["tokens"]), f"{r['fusion_params']:,}", f"{r['params']:,}",
                     f"{r['flops_per_image'] / 1e9:.3f}", ms(r, "fwd"), ms(r, "fwd_bwd"), ratio(r, base),
                     f"{r['peak_increase_mb']:.0f}"])
    return table(["experts", "fusion", "tokens", "fusion params", "vision params", "GFLOPs/img", "fwd ms min / med",
                  "fwd+bwd ms min / med", "×clip", "peak MB"], body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=10, help="timed reps per configuration (after warm-up)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in every measuring process")
    parser.add_argument("--json", metavar="PATH", help="also write the raw numbers here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child), args.reps, args.warmup, args.batch, args.threads)))
        return

    configs: list[Row] = [{"kind": "expert", "name": n} for n in expert_names()]
    configs += [{"kind": "fusion", "fusion": f, "experts": s} for s in EXPERT_SETS for f in FUSIONS]
    load = os.getloadavg()[0]
    rows = []
    for i, config in enumerate(configs, 1):
        print(f"[{i}/{len(configs)}] {config.get('name') or config['fusion'] + ' ' + str(config['experts'])}",
              file=sys.stderr, flush=True)
        rows.append(run_child(config, args))
    experts = [r for r in rows if r["kind"] == "expert"]
    fusions = [r for r in rows if r["kind"] == "fusion"]
    base = next((r["fwd_bwd_med"] for r in experts if r["name"] == "clip" and "error" not in r), None)
    print(f"torch {torch.__version__}, {args.threads} threads, OMP_WAIT_POLICY=PASSIVE, batch {args.batch} uint8 "
          f"{IMAGE_SIZE}px images, grid {GRID}, {args.reps} timed reps after {args.warmup} warm-up, one fresh "
          f"process per row; load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end\n")
    print("## Experts: grid_tokens(images, grid=8), tiny preset at its default resolution\n")
    print(expert_table(experts, base) + "\n")
    print(f"## Fusions: experts + fusion + projector to LM width {LM_DIM} (encode_images)\n")
    print(fusion_table(fusions, base) + "\n")
    print("ms: per batch. ×clip: median fwd+bwd over clip alone's median (section 1, this run). GFLOPs/img: forward "
          "FLOPs per image (count_flops). tokens: visual tokens per image. vision params: experts + fusion + "
          "projector. peak MB: peak RSS during the timed fwd+bwd reps minus RSS just before them (a fresh process "
          "per row; weights, inputs and libraries excluded, activations + gradients + temporaries included).")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": vars(args) | {"grid": GRID, "lm_dim": LM_DIM, "image_size": IMAGE_SIZE},
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
