"""Import what a search runs once, so Python writes the bytecode of exactly those modules (scripts/bootstrap.sh).

bootstrap.sh installs with ``pip --no-compile``: pip would otherwise byte-compile every module of every package
(6.7 GB with torch's CUDA build), half of the install's time. Importing compiles only what is used; each later process
reads the compiled files. ``group`` splits the work over two processes that import disjoint libraries (one per core);
``rest`` then imports what needs both.
"""

from __future__ import annotations

import os
import sys
import tempfile

GROUPS = {
    # the trial path: torch, torchvision, timm, transformers and eaglesearch's own modules
    "model": ("eaglesearch.trial.run", "eaglesearch.execution.inline_runner", "eaglesearch.cli",
              "eaglesearch.app.run", "timm", "torchvision"),
    # the driver's and the store's side, without torch: Ray Tune, MLflow (its server, and a store's migrations)
    "store": ("ray", "ray.tune", "optuna", "pandas", "mlflow", "mlflow.server", "mlflow.store.tracking.sqlalchemy_store"),
    "rest": ("ray.train.torch", "eaglesearch.execution.ray_runner", "eaglesearch.execution.multi_worker"),
}


def main(group: str) -> None:
    import importlib

    for name in GROUPS[group]:
        importlib.import_module(name)
    if group == "store":  # a new store runs MLflow's migration scripts, loaded from source by alembic
        import logging

        from mlflow.tracking import MlflowClient

        for logger in ("mlflow", "alembic"):
            logging.getLogger(logger).setLevel(logging.WARNING)

        with tempfile.TemporaryDirectory() as folder:
            MlflowClient(f"sqlite:///{os.path.join(folder, 'mlflow.db')}").search_experiments()


if __name__ == "__main__":
    main(sys.argv[1])
