"""Trial keys are the record's identity: a refactor of how specs are declared must not change a single one.

``support/shipped_trial_keys.json`` was recorded before the strategy/recipe redesign (issue 23 item 7) from the
shipped search spaces: the keys of the trials ``plan`` sizes, of every trial the preflight checks, of the
strategy's first proposals, and the search fingerprint (which names the Ray experiment). A change here means every
recorded trial would be retrained and every resumable search restarted; if it is intended, record the file again
and say why in the commit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eaglesearch.model.validate import load_checked_search
from eaglesearch.search import make_strategy, planned_trials, reachable_trials

REPO = Path(__file__).resolve().parent.parent
RECORDED = json.loads((Path(__file__).parent / "support" / "shipped_trial_keys.json").read_text())


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_shipped_space_keeps_its_trial_keys(name: str) -> None:
    loaded = load_checked_search(REPO / "search_spaces" / f"{name}.yaml")
    strategy = make_strategy(loaded)
    first = []
    while (p := strategy.ask()) is not None:
        first.append(p.key)
    assert {
        "fingerprint": loaded.fingerprint,
        "first_proposals": first,
        "planned": [t.key for t in planned_trials(loaded)],
        "reachable": [c.trial.key for c in reachable_trials(loaded)],
    } == RECORDED[name]
