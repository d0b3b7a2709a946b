"""A search's winners in MLflow: trained weights as an MLflow (pyfunc) model of the trial's run, pruned to the best
``keep_best`` while the search runs, then registered as versions of the model named after the search.

Why weights are logged by every finished trial and pruned as results arrive: a trial cannot know it is among the
best when it ends, and training it again later costs its whole training. Pruning after each result bounds what
is stored to ``keep_best`` plus the trials in flight (at 7B, ~14 GB each in bf16), instead of every trial of the
search until it ends. Only this search's own runs lose weights: a trial served from an earlier search's record keeps
its weights in that search's run, which is where a registered version then points.

The logged model is an MLflow ``pyfunc`` whose loader module is :data:`PYFUNC_LOADER` (``eaglesearch/export``):
the weights folder (``model/saved.py``) sits in it as ``data/weights``. ``mlflow.pyfunc.load_model`` on the run's
``model`` artifact or on ``models:/<search>/<version>`` (or ``models:/<search>@best``) answers a DataFrame with
``image`` (a path or a ``data:`` URL) and ``prompt`` columns, one answer per row.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from eaglesearch.tracking import patience
from eaglesearch.tracking import records as R
from eaglesearch.tracking.uri import absolute_uri

MODEL_ARTIFACT = "model"  # the run's artifact folder holding the pyfunc model
WEIGHTS_DATA = "weights"  # the weights folder inside it: model/data/weights
PYFUNC_LOADER = "eaglesearch.export.pyfunc"  # a module path, not an import: tracking/ may not import export/
TAG_WEIGHTS = "eaglesearch.weights"  # on a trial run: "stored" while its model is logged, "deleted" once pruned
WEIGHTS_STORED = "stored"
WEIGHTS_DELETED = "deleted"
BEST_ALIAS = "best"
_REQUIREMENTS = ("torch", "transformers", "safetensors", "tokenizers", "pillow", "pandas")


@dataclass(frozen=True)
class KeptTrial:
    """A trial whose weights a search keeps: the run that holds them (its own, or the run it was cached from)."""

    key: str
    label: str
    value: float  # the search's objective
    run_id: str  # the run holding the ``model`` artifact
    trial_run_id: str  # the trial's run under this search's parent (== run_id unless it was cached)


@dataclass(frozen=True)
class RegisteredWinner:
    name: str
    version: str
    trial: KeptTrial

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def pip_requirements() -> list[str]:
    """What loading the logged model needs besides eaglesearch itself, pinned to this environment's versions."""
    out = []
    for name in _REQUIREMENTS:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return out


def model_name(search: str) -> str:
    """The registered model of a search: its name (already restricted to letters, digits, ``_ . -``)."""
    return search


class Winners:
    """Weights of trial runs in one MLflow store: log, prune to the best N, register."""

    def __init__(self, uri: str) -> None:
        self.uri = absolute_uri(uri)
        patience.install()  # an unreachable server is waited for, as by TrackingStore
        self._client: MlflowClient = patience.PatientClient(  # type: ignore[assignment]
            MlflowClient(tracking_uri=self.uri, registry_uri=self.uri), self.uri)

    # ---------------------------------------------------------------- one trial's weights

    def log_weights(self, run_id: str, folder: Path) -> None:
        """Log the weights folder (named :data:`WEIGHTS_DATA`, as ``model/data/`` names it after its source) as the
        pyfunc model ``model/`` of ``run_id`` and tag the run ``stored``."""
        import mlflow.pyfunc
        from mlflow.models.signature import ModelSignature
        from mlflow.types.schema import ColSpec, Schema

        if Path(folder).name != WEIGHTS_DATA:
            raise ValueError(f"the weights folder must be named '{WEIGHTS_DATA}', not {Path(folder).name!r}")
        signature = ModelSignature(inputs=Schema([ColSpec("string", "image"), ColSpec("string", "prompt")]),
                                   outputs=Schema([ColSpec("string")]))
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            # An input example would make MLflow load the model and predict with it at every trial's end.
            warnings.filterwarnings("ignore", message=".*An input example was not provided")
            model_dir = Path(tmp) / MODEL_ARTIFACT
            mlflow.pyfunc.save_model(path=str(model_dir), loader_module=PYFUNC_LOADER, data_path=str(folder),
                                     pip_requirements=pip_requirements(), signature=signature)
            self._client.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT)
        self._client.set_tag(run_id, TAG_WEIGHTS, WEIGHTS_STORED)

    def delete_weights(self, run_id: str) -> None:
        """Remove a run's logged model (its files; the run and its metrics stay) and tag it ``deleted``."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        repo = get_artifact_repository(self._client.get_run(run_id).info.artifact_uri, tracking_uri=self.uri)
        repo.delete_artifacts(MODEL_ARTIFACT)
        self._client.set_tag(run_id, TAG_WEIGHTS, WEIGHTS_DELETED)

    def has_weights(self, run_id: str) -> bool:
        return self._client.get_run(run_id).data.tags.get(TAG_WEIGHTS) == WEIGHTS_STORED

    def model_uri(self, run_id: str) -> str:
        """Where a run's logged model lives (an artifact URI the registry and ``pyfunc.load_model`` read)."""
        return f"{self._client.get_run(run_id).info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT}"

    def download_weights(self, run_id: str, dst: Path) -> Path:
        """Copy a run's weights folder (``model/data/weights``) into ``dst``; the copied folder."""
        return Path(self._client.download_artifacts(run_id, f"{MODEL_ARTIFACT}/data/{WEIGHTS_DATA}", str(dst)))

    # ---------------------------------------------------------------- a search's best

    def ranked(self, parent_id: str, objective: str, mode: str, experiment_id: str | None = None) -> list[KeptTrial]:
        """Trials of ``parent_id`` whose weights are stored (their own, or those of the run they were cached from),
        best first by ``objective``; one per key. ``experiment_id``: the parent's, when the caller knows it (one
        request fewer: the search prunes after every trial)."""
        exp_id = experiment_id or self._client.get_run(parent_id).info.experiment_id
        runs = self._search(exp_id, R.tag_filter({R.TAG_PARENT: parent_id, R.TAG_KIND: R.KIND_TRIAL}))
        found: dict[str, KeptTrial] = {}
        for run in runs:
            tags, metrics = run.data.tags, run.data.metrics
            if tags.get(R.TAG_STATUS) not in (R.STATUS_FINISHED, R.STATUS_CACHED) or run.info.status != "FINISHED":
                continue
            value = metrics.get(objective)
            if value is None or math.isnan(value):
                continue
            holder = run.info.run_id if tags.get(TAG_WEIGHTS) == WEIGHTS_STORED else None
            source = tags.get(R.TAG_CACHED_FROM)
            if holder is None and source and self._stored_at(source):
                holder = source
            if holder is None:
                continue
            key = tags.get(R.TAG_KEY, "")
            kept = KeptTrial(key=key, label=tags.get(R.TAG_LABEL, key), value=float(value), run_id=holder,
                             trial_run_id=run.info.run_id)
            if key not in found or kept.run_id == kept.trial_run_id:  # prefer the run that trained it here
                found[key] = kept
        sign = -1.0 if mode == "max" else 1.0
        return sorted(found.values(), key=lambda k: (sign * k.value, k.key))

    def prune(self, parent_id: str, objective: str, mode: str, keep: int, answer: str | None = None,
              protect: Collection[str] = (), experiment_id: str | None = None) -> list[KeptTrial]:
        """Delete the weights of this search's own trial runs outside the best ``keep``; the kept trials, best
        first. ``answer`` is the key of the design the strategy concluded with (greedy: the adopted incumbent): it
        ranks first whatever its objective, so the model a search keeps and registers as ``best`` is the one it
        chose, not a candidate it declined whose point estimate came out higher. Keys in ``protect`` (a round's
        candidates not yet decided) keep their weights for now. Weights held by another search's run (a cached
        trial's source) are never deleted here."""
        ranked = self.ranked(parent_id, objective, mode, experiment_id)
        ranked.sort(key=lambda t: t.key != answer)  # stable: the rest stays in objective order
        kept, dropped = ranked[:keep], ranked[keep:]
        for trial in dropped:
            if trial.run_id == trial.trial_run_id and trial.key not in protect:
                self.delete_weights(trial.run_id)
        return kept

    def register(self, search: str, kept: list[KeptTrial], objective: str) -> list[RegisteredWinner]:
        """A version of the registered model ``model_name(search)`` per kept trial (best first), tagged with the
        objective and the trial key; the best gets the alias ``best``. A run already registered there is not
        registered twice (a search run again registers nothing new)."""
        name = model_name(search)
        try:
            self._client.create_registered_model(name, tags={"eaglesearch.search": search},
                                                 description=f"Trials kept by the eaglesearch search '{search}'")
        except MlflowException as err:
            if "already exists" not in str(err).lower() and "RESOURCE_ALREADY_EXISTS" not in str(err):
                raise
        existing = {v.run_id: v for v in self._client.search_model_versions(f"name = '{name}'")}
        out = []
        for trial in kept:
            version = existing.get(trial.run_id)
            if version is None:
                tags = {"objective": f"{trial.value:.6g}", "objective_metric": objective, "key": trial.key,
                        "trial": trial.label}
                version = self._client.create_model_version(name, source=self.model_uri(trial.run_id),
                                                            run_id=trial.run_id, tags=tags,
                                                            description=f"{trial.label}: {objective} = {trial.value:.4f}")
            out.append(RegisteredWinner(name=name, version=str(version.version), trial=trial))
        if out:
            self._client.set_registered_model_alias(name, BEST_ALIAS, out[0].version)
        return out

    def versions(self, search: str) -> list[dict[str, Any]]:
        """Every registered version of the search's model: version, run id and tags."""
        found = self._client.search_model_versions(f"name = '{model_name(search)}'")
        return sorted(({"version": str(v.version), "run_id": v.run_id, **v.tags} for v in found),
                      key=lambda v: int(v["version"]))

    def find(self, search: str, key: str | None = None) -> dict[str, Any]:
        """The registered version of ``search`` to use: the one whose trial key starts with ``key``, else the one
        aliased ``best``. ``LookupError`` (with what there is) when none or several match."""
        versions = self.versions(search)
        if not versions:
            raise LookupError(f"search '{search}' has no kept model in {self.uri}: it has not completed yet, or ran "
                              "with keep_best: 0; run it to the end with keep_best >= 1")
        if key is None:
            best = self._client.get_model_version_by_alias(model_name(search), BEST_ALIAS)
            return next(v for v in versions if v["version"] == str(best.version))
        matches = [v for v in versions if v.get("key", "").startswith(key)]
        if len(matches) != 1:
            kept = ", ".join(f"{v.get('key', '')[:12]} ({v.get('trial', '')})" for v in versions)
            what = "no kept trial" if not matches else f"{len(matches)} kept trials"
            raise LookupError(f"search '{search}': {what} with a key starting '{key}'; kept: {kept}")
        return matches[0]

    # ---------------------------------------------------------------- internals

    def _stored_at(self, run_id: str) -> bool:
        try:
            return self.has_weights(run_id)
        except MlflowException:  # the source run was deleted
            return False

    def _search(self, experiment_id: str, query: str) -> list[Any]:
        out: list[Any] = []
        token = None
        while True:
            page = self._client.search_runs([experiment_id], filter_string=query, max_results=1000, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out
