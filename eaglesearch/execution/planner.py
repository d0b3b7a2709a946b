"""``eaglesearch plan``: what a search will run and what it will cost, measured without training it.

For every distinct model the strategy can reach in its first round (and, for greedy, the largest model it could
end with), the planner builds the model exactly as a trial would, counts parameters and visual tokens, measures
forward FLOPs per sample with ``torch.utils.flop_counter``, and times two optimizer steps on a real batch to
estimate the training time (estimate = median step time × steps). Nothing is trained or recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from eaglesearch.data import TrainDataset, collate_train
from eaglesearch.execution.threads import pin_threads
from eaglesearch.execution.trial_core import prepare_data, prepare_tokenizer
from eaglesearch.execution.workspace import Workspace
from eaglesearch.model import build_eagle
from eaglesearch.search import Strategy, make_strategy
from eaglesearch.spec import LoadedSearch, TrialSpec
from eaglesearch.spec.search_space import GreedyStrategySpec
from eaglesearch.train import build_optimizer


@dataclass(frozen=True)
class ModelCost:
    label: str
    params_total: int
    params_trainable: int
    visual_tokens: int
    forward_gflops_per_sample: float
    step_s: float
    est_train_s: float


@dataclass(frozen=True)
class Plan:
    strategy: str
    trials_per_round: list[int]
    costs: list[ModelCost]

    @property
    def total_trials(self) -> int:
        return sum(self.trials_per_round)


def _first_proposals(strategy: Strategy) -> list[TrialSpec]:
    trials = []
    while (p := strategy.ask()) is not None:
        trials.append(p.trial)
    return trials


def planned_trials(loaded: LoadedSearch) -> list[TrialSpec]:
    """The trials whose cost the plan reports: greedy's base, base + each candidate and the largest reachable
    model; every grid trial."""
    spec = loaded.space.strategy
    if isinstance(spec, GreedyStrategySpec):
        base = spec.base_experts
        trials = [loaded.factory.make(base)]
        trials += [loaded.factory.make((*base, c)) for c in spec.candidate_experts]
        trials.append(loaded.factory.make((*base, *spec.candidate_experts)))
    else:
        trials = _first_proposals(make_strategy(loaded))
    seen: dict[str, TrialSpec] = {}
    for t in trials:
        seen.setdefault(t.key, t)
    return list(seen.values())


def measure(trial: TrialSpec, workspace: Workspace, threads: int) -> ModelCost:
    pin_threads(threads)
    data = prepare_data(trial.data, workspace)
    tokenizer = prepare_tokenizer(trial, data, workspace)
    torch.manual_seed(trial.seed)
    model = build_eagle(trial.model, tokenizer)
    counts = model.param_counts()
    dataset = TrainDataset(data.train[: trial.train.batch_size], tokenizer, image_size=trial.data.image_size,
                           num_visual_tokens=model.num_visual_tokens, max_length=trial.data.max_length)
    batch = collate_train([dataset[i] for i in range(len(dataset))], tokenizer.pad_token_id)
    one = {k: v[:1] for k, v in batch.items()}
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(one["images"], one["input_ids"], one["attention_mask"], labels=one["labels"])
    flops = counter.get_total_flops()
    model.train()
    optimizer = build_optimizer(model, trial.train)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        loss = model(batch["images"], batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    step_s = sorted(times[1:])[0]  # first step pays one-off allocation costs
    return ModelCost(
        label=trial.label, params_total=counts["total"], params_trainable=counts["trainable"],
        visual_tokens=model.num_visual_tokens, forward_gflops_per_sample=flops / 1e9, step_s=step_s,
        est_train_s=step_s * trial.train.steps,
    )


def make_plan(loaded: LoadedSearch, workspace: Workspace, measure_costs: bool = True) -> Plan:
    strategy = make_strategy(loaded)
    costs = [measure(t, workspace, loaded.space.resources.torch_threads) for t in planned_trials(loaded)] \
        if measure_costs else []
    return Plan(strategy=strategy.kind, trials_per_round=strategy.expected_trials(), costs=costs)
