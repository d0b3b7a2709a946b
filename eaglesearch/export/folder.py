"""An exported winner on disk: the saved model (``model/saved.py``) plus a README model card saying what it is, how
it scored and how to use it. Self-contained: nothing in it refers to the search's store, hub ids or artifact cache.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eaglesearch.model.saved import SPEC, missing_files
from eaglesearch.spec import TrialSpec

CARD = "README.md"
RECORD = "record.json"  # where the model came from and what it scored, as data (the card is for people)


@dataclass(frozen=True)
class ModelCard:
    """What the card says about the model: its search, trial and scores."""

    search: str
    key: str
    label: str
    objective: str  # the search's objective metric, e.g. ``objective`` or ``score/textvqa``
    value: float
    run_id: str
    scores: dict[str, float] = field(default_factory=dict)  # score/<benchmark> (and intervals) of the trial
    registered: str | None = None  # models:/<name>/<version> when the trial was registered


def _architecture(trial: TrialSpec) -> list[str]:
    m = trial.model
    lm = m.lm.name_or_path if m.lm.kind == "hf" else f"tiny_llama ({m.lm.num_layers} layers, d={m.lm.hidden_size})"
    return [f"- experts: {', '.join(e.label for e in m.experts)}",
            f"- fusion: {m.fusion} on a {m.grid}x{m.grid} token grid, projector {m.projector}",
            f"- language model: {lm}; tokenizer {m.tokenizer.kind}",
            (f"- input: square {trial.data.image_size} px images, conversation template `{trial.data.template}`, "
             f"greedy decoding up to {trial.eval.max_new_tokens} new tokens"),
            f"- training: {trial.train.label}, seed {trial.seed}"]


def render_card(card: ModelCard, trial: TrialSpec) -> str:
    scores = [f"| {name} | {value:.4f} |" for name, value in sorted(card.scores.items())]
    lines = [
        f"# {card.label}",
        "",
        (f"The model an eaglesearch search kept: search `{card.search}`, trial key `{card.key}` (MLflow run "
         f"`{card.run_id}`{', registered as `' + card.registered + '`' if card.registered else ''})."),
        "",
        f"**{card.objective} = {card.value:.4f}** (the search's objective).",
        "",
        "## Architecture",
        "",
        *_architecture(trial),
        "",
    ]
    if scores:
        lines += ["## Scores of the trial", "", "| metric | value |", "|---|---|", *scores, ""]
    lines += [
        "## Use",
        "",
        "```python",
        "import eaglesearch",
        "model = eaglesearch.load(\"<this folder>\")",
        "model.generate([\"image.png\"], [\"What is written here?\"])  # -> list of answers",
        "```",
        "",
        "```bash",
        "eaglesearch predict <this folder> image.png \"What is written here?\"",
        "```",
        "",
        ("lmms-eval (`pip install lmms-eval`): `python -m lmms_eval --model eaglesearch --model_args "
         "pretrained=<this folder> --tasks <task>`."),
        "",
        "## Files",
        "",
        ("`model.safetensors` (every weight), `trial.json` (the trial spec), `tokenizer/`, `lm/config.json`, "
         f"`eaglesearch.json` (format), `{RECORD}` (this card as data)."),
        "",
    ]
    return "\n".join(lines)


def write_export(weights: Path, out: Path, card: ModelCard) -> Path:
    """Copy a saved model (``weights``) into ``out`` (new or empty) and write its card."""
    missing = missing_files(Path(weights))
    if missing:
        raise FileNotFoundError(f"the kept weights in {weights} lack {', '.join(missing)}; the run's model artifact "
                                "is incomplete (was its upload interrupted?)")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; choose a new folder or remove it")
    shutil.copytree(weights, out, dirs_exist_ok=True)
    trial = TrialSpec.model_validate_json((out / SPEC).read_text())
    (out / CARD).write_text(render_card(card, trial))
    (out / RECORD).write_text(json.dumps(asdict(card), indent=2, sort_keys=True))
    return out
