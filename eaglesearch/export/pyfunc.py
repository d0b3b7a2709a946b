"""The MLflow ``pyfunc`` loader of a kept winner: ``mlflow.pyfunc.load_model`` calls :func:`_load_pyfunc` on the
model's ``data/weights`` folder (``tracking/winners.py`` names this module in the logged model's ``MLmodel``).

It lives here, not in ``tracking/``, because loading is the model's business (``model/``, ``data/``); MLflow is not
imported: the object returned only needs a ``predict(model_input, params)`` method.
"""

from __future__ import annotations

from typing import Any

from eaglesearch.export.winner import Winner, load

INPUT_COLUMNS = ("image", "prompt")


def _rows(model_input: Any) -> tuple[list[Any], list[str]]:
    """(images, prompts) from a DataFrame, a mapping of columns or a list of row mappings."""
    if hasattr(model_input, "to_dict"):  # a pandas DataFrame (what MLflow hands over after checking the signature)
        model_input = model_input.to_dict(orient="list")
    if isinstance(model_input, list):
        model_input = {c: [row[c] for row in model_input] for c in INPUT_COLUMNS if all(c in r for r in model_input)}
    missing = [c for c in INPUT_COLUMNS if c not in model_input]
    if missing:
        raise ValueError(f"the input lacks the column(s) {', '.join(missing)}; give 'image' (a path or a data: URL) "
                         "and 'prompt' (the question) for every row")
    return list(model_input["image"]), [str(p) for p in model_input["prompt"]]


class PyfuncWinner:
    """What ``mlflow.pyfunc.load_model`` wraps: rows of (image, prompt) in, one answer per row out."""

    def __init__(self, winner: Winner) -> None:
        self.winner = winner

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> list[str]:
        images, prompts = _rows(model_input)
        limit = (params or {}).get("max_new_tokens")
        return self.winner.generate(images, prompts, max_new_tokens=int(limit) if limit else None)


def _load_pyfunc(data_path: str) -> PyfuncWinner:
    return PyfuncWinner(load(data_path))
