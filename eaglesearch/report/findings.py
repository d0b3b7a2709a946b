"""The findings report: each of the paper's claims (and our ablations) with its verdict and paired 95% interval.

``benchmarks/findings.py`` measures the claims in the tiny world and hands the outcome here as
:class:`FindingOutcome` values; this module renders them as ``findings.md`` and ``findings.html`` (the same page
renderer and style as a search's ``report.html``, :func:`eaglesearch.report.html.page`). A finding compares
designs that differ in one choice: every :class:`Comparison` is design ``a`` − design ``b`` on the objective,
paired per (training seed, eval item), with the project's paired percentile bootstrap interval.

Verdicts: ``holds`` (interval above 0), ``contradicted`` (below 0), ``not resolved (interval contains 0)``; a claim
of parity ("competitive") holds unless the interval lies wholly below 0 (``worse``). A finding's overall verdict
counts its comparisons' verdicts. Nothing here reads a clock, so the same outcome renders to the same bytes.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from eaglesearch.report.html import page

HOLDS, CONTRADICTED, UNRESOLVED = "holds", "contradicted", "not resolved (interval contains 0)"
COMPETITIVE, WORSE = "competitive", "worse"


def verdict(low: float, high: float, parity: bool = False) -> str:
    """The verdict of one comparison's interval: a claim that ``a`` beats ``b``, or (``parity``) that ``a`` is
    not worse than ``b``."""
    if parity:
        return WORSE if high < 0 else COMPETITIVE
    if low > 0:
        return HOLDS
    if high < 0:
        return CONTRADICTED
    return UNRESOLVED


@dataclass(frozen=True)
class Comparison:
    """Design ``a`` − design ``b`` on the objective, paired over (seed, item)."""

    a: str
    b: str
    delta: float
    low: float
    high: float
    p_value: float
    n_units: int  # paired (seed, item) units the bootstrap resampled
    per_seed: tuple[float, ...]  # the delta of each training seed alone
    verdict: str
    detail: str = ""  # e.g. the two designs' cost (vision GFLOPs, visual tokens, train seconds)

    @property
    def label(self) -> str:
        return f"{self.a} − {self.b}"


@dataclass(frozen=True)
class FindingOutcome:
    number: int
    claim: str
    note: str  # why the claim should or should not hold at this scale
    comparisons: tuple[Comparison, ...]
    variant: str = ""  # a finding measured again under another setting, e.g. "fusion_norm layernorm"

    @property
    def title(self) -> str:
        return f"Finding {self.number}" + (f" ({self.variant})" if self.variant else "")

    @property
    def slug(self) -> str:
        """A name for ids and run names: ``finding-2``, ``finding-2-fusion_norm-layernorm``."""
        return f"finding-{self.number}" + (f"-{self.variant.replace(' ', '-')}" if self.variant else "")

    @property
    def verdict(self) -> str:
        """One verdict when every comparison agrees, else each verdict with its count."""
        counts = Counter(c.verdict for c in self.comparisons)
        if len(counts) == 1:
            return next(iter(counts))
        return "; ".join(f"{v} in {n} of {len(self.comparisons)}" for v, n in counts.most_common())


@dataclass(frozen=True)
class FindingsRun:
    """What was measured and how: shown above the findings."""

    command: str
    seeds: int
    items: int  # eval items per design and seed
    objective: str
    not_measured: tuple[str, ...] = ()  # findings of the paper this run left out, e.g. "1 (unfreezing)"


def _interval(c: Comparison) -> str:
    return f"{c.delta:+.3f} [{c.low:+.3f}, {c.high:+.3f}]"


def _seeds(c: Comparison) -> str:
    return ", ".join(f"{d:+.3f}" for d in c.per_seed)


def _preamble(run: FindingsRun) -> str:
    return (f"Each delta is design a − design b on `{run.objective}`, the mean over training seeds 0..{run.seeds - 1}; "
            f"its 95% interval is the paired percentile bootstrap over (seed, item) pairs ({run.seeds} seeds × "
            f"{run.items} eval items: seed i of one design paired with seed i of the other on the same item).")


def findings_markdown(outcomes: Sequence[FindingOutcome], run: FindingsRun) -> str:
    """``findings.md``: the run, then per finding its claim, verdict, a table of comparisons and the note."""
    lines = ["# Findings", "", f"Regenerate: `{run.command}`", "", _preamble(run), ""]
    if run.not_measured:
        lines += [f"Not measured in this run: {', '.join(run.not_measured)}.", ""]
    for f in outcomes:
        lines += [f"## {f.title}: {f.claim}", "", f"**Verdict: {f.verdict}**", "",
                  "| comparison (a − b) | delta [95% CI] | p | per seed | verdict |", "|---|---|---|---|---|"]
        lines += [f"| {c.label} | {_interval(c)} | {c.p_value:.3f} | {_seeds(c)} | {c.verdict} |"
                  for c in f.comparisons]
        details = [f"- {c.label}: {c.detail}" for c in f.comparisons if c.detail]
        lines += ["", *details, *([""] if details else []), f"Why: {f.note}", ""]
    return "\n".join(lines)


def findings_table(outcome: FindingOutcome) -> str:
    """One finding's comparisons as an HTML table (the leaderboard's style)."""
    head = ("comparison (a − b)", "delta", "95% interval", "p", "per seed", "verdict", "detail")
    rows = []
    for c in outcome.comparisons:
        cls = {HOLDS: "best", COMPETITIVE: "best", CONTRADICTED: "failed", WORSE: "failed"}.get(c.verdict)
        cells = (f"<td>{html.escape(c.label)}</td>", f'<td class="num">{c.delta:+.3f}</td>',
                 f'<td class="num">[{c.low:+.3f}, {c.high:+.3f}]</td>', f'<td class="num">{c.p_value:.3f}</td>',
                 f'<td class="num">{html.escape(_seeds(c))}</td>', f"<td>{html.escape(c.verdict)}</td>",
                 f"<td>{html.escape(c.detail)}</td>")
        attr = f' class="{cls}"' if cls else ""
        rows.append(f"<tr{attr}>" + "".join(cells) + "</tr>")
    return ('<div class="scroll"><table class="leaderboard"><thead><tr>'
            + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>" + "".join(rows)
            + "</tbody></table></div>")


def findings_html(outcomes: Sequence[FindingOutcome], run: FindingsRun) -> str:
    """``findings.html``: the same findings as the markdown, one section per finding."""
    meta = (f'<p class="meta">{html.escape(_preamble(run))}<br>regenerate: <code>{html.escape(run.command)}</code>'
            + (f"<br>not measured in this run: {html.escape(', '.join(run.not_measured))}" if run.not_measured
               else "") + "</p>")
    sections = [(f.slug, f"{f.title}: {f.claim}",
                 (f"<p><b>Verdict: {html.escape(f.verdict)}</b></p>\n{findings_table(f)}\n"
                 f'<p class="note">Why: {html.escape(f.note)}</p>')) for f in outcomes]
    return page("eaglesearch findings", meta, sections, plotly=False)
