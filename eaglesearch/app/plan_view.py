"""``eaglesearch plan`` on the terminal: the plan of a search (``app.plan.make_plan``) as rich tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_plan(name: str, result: Any, out: Console, err: Console) -> None:
    """What ``eaglesearch plan`` prints: trials per round, each model's size, FLOPs, time and memory, the pretrained
    components and per-expert artifacts a search needs, and each stage's data mixture."""
    rounds = ", ".join(f"round {i}: {n}" for i, n in enumerate(result.trials_per_round))
    out.print(f"search [bold]{name}[/bold] ({result.strategy}): at most {result.total_trials} trials ({rounds})")
    if result.models:
        table = Table(title="model cost: FLOPs counted on a real forward pass (2 per multiply-add); 'meta' = built "
                      "from config only, nothing allocated")
        columns = ["model", "built", "params", "trainable", "vision params", "visual tokens", "vision GFLOPs/img",
                   "GFLOPs/sample", "s/step", "est. train s"]
        for col in columns:
            table.add_column(col, justify="left" if col in ("model", "built") else "right")
        for m in result.models:
            table.add_row(
                m.label, m.scale, f"{m.params_total:,}", f"{m.params_trainable:,}", f"{m.params_vision:,}",
                f"{m.visual_tokens:,}", f"{m.vision_gflops_per_image:,.3f}",
                "–" if m.gflops_per_sample is None else f"{m.gflops_per_sample:,.3f}",
                "–" if m.step_s is None else f"{m.step_s:.3f}",
                "–" if m.est_train_s is None else f"{m.est_train_s:,.0f}",
            )
        out.print(table)
        for m in result.models:
            if m.assumed:
                err.print(f"[yellow]{m.label}: could not read the LM's architecture:[/yellow] {m.assumed}",
                          highlight=False)
        _print_images(result.models, out)
        _print_memory(result.models, out, err)
    if result.pretrained:
        where = {w: sum(c.where == w for c in result.pretrained) for w in ("shipped", "store", "build")}
        out.print(f"pretrained components: {len(result.pretrained)} ({where['shipped']} shipped with the package, "
                  f"{where['store']} in the artifact store, {where['build']} to pretrain on first use, once each)")
        for c in result.pretrained:
            out.print(f"  {c.kind}/{c.name}  {c.key}  {c.where}")
    if result.artifacts:
        stored = sum(a.stored for a in result.artifacts)
        out.print(f"per-expert stages: {len(result.artifacts)} artifacts, each trained once for the whole search "
                  f"and reused by every trial with that expert ({stored} already in the artifact store)")
        for a in result.artifacts:
            when = "stored" if a.stored else ("–" if a.est_train_s is None else f"~{a.est_train_s:,.0f}s")
            out.print(f"  {a.stage}/{a.expert}  {a.key}  {when}")
    _print_mixtures(result.mixtures, out)
    if result.est_train_s is not None:
        out.print(f"estimated training time: at most ~{result.est_train_s:,.0f}s for {result.total_trials} trials "
                  "(largest model x trial count, plus the per-expert artifacts still to build; evaluation and "
                  "start-up not included)")


def _print_images(models: Any, out: Console) -> None:
    """Under data.image: dynamic, how many square images (tiles + thumbnail) the training pictures become."""
    for m in models:
        if m.images_worst <= 1:
            continue
        seen = m.images.describe() if m.images is not None else "no training picture readable here"
        out.print(f"{m.label}: images per picture (data.image: dynamic, at most {m.images_worst}): {seen}; visual "
                  f"tokens and vision GFLOPs above are per image, GFLOPs/sample use the mean (the worst case when "
                  "no picture was read), memory the worst case", highlight=False)


def _print_mixtures(mixtures: Any, out: Console) -> None:
    """Each stage's data: per source its size (counted here, or as declared), share and samples drawn."""
    for m in mixtures:
        total = m.total
        head = f"stage {m.stage}: mixture {m.mixture}, " + (f"{total:,} samples" if total is not None else
                                                          "size unknown (declare each source's size)")
        out.print(head + (f", {m.steps:,} steps" if m.steps is not None else ""))
        for s in m.sources:
            size = "?" if s.size is None else f"{s.size:,} ({s.sized_by})"
            drawn = "" if s.share is None else f"  share {s.share.share:.1%}  samples {s.share.samples:,}"
            out.print(f"  {s.name}  {s.format}  size {size}{drawn}")


def _print_memory(models: Any, out: Console, err: Console) -> None:
    """Estimated peak memory per GPU of each planned model (ddp and fsdp), its breakdown, and what does not fit."""
    priced = [m for m in models if m.memory is not None]
    if not priced:
        return
    table = Table(title="memory per GPU: estimated peak of one training step (the stage with the highest peak), and "
                  "host RAM per rank (model as loaded + the largest expert built at fp32; CPU trials: training too); "
                  "eaglesearch.model.memory")
    for col in ("model", "stage", "setup", "ddp GB", "fsdp GB", "used", "GPU GB", "fits", "host RAM GB/rank",
                "breakdown (used)"):
        table.add_column(col, justify="right" if col.endswith("GB") else "left", overflow="fold")
    for m in priced:
        mem = m.memory
        stage, used = mem.peak(mem.parallelism)
        ddp, fsdp = mem.peak("ddp")[1], mem.peak("fsdp")[1]
        fits = {None: "–", True: "[green]yes[/green]", False: "[red]no[/red]"}[mem.fits]
        table.add_row(m.label, stage.stage.name, used.setup, f"{ddp.total_gb:,.1f}",
                      f"{fsdp.total_gb:,.1f}" if mem.on_gpu else "–", mem.parallelism if mem.on_gpu else "cpu",
                      "–" if mem.available_gb is None else f"{mem.available_gb:,.0f}", fits,
                      "–" if mem.host is None else f"{mem.host.total_gb:,.1f}",
                      used.breakdown() + ("" if mem.host is None else f"; host: {mem.host.breakdown()}"))
    out.print(table)
    for m in priced:
        if m.memory.fits is False:
            err.print(f"[yellow]does not fit:[/yellow] {m.memory.refusal()}", highlight=False)
