"""``eaglesearch ui``'s server: MLflow's own tracking server and UI, in which opening a search's experiment lands on
its leaderboard.

Why a server of our own: MLflow 3.17's UI picks the GenAI or the model-training pages from the URL parameter
``workflowType``, else from the browser's saved GenAI / Model training switch (GenAI unless the user flipped it);
an experiment's ``mlflow.experimentKind`` tag is not read while that switch exists (``mlflow_ui.py``). So the bare
experiment URL ``#/experiments/<id>`` — what the experiments list links to, and what people bookmark — opens the
GenAI "Overview" page, not the runs. The only server-side hook is the page itself: this module adds one small script
to the UI's ``index.html`` that sends an experiment URL without a tab, of an experiment that holds an eaglesearch
leaderboard (its saved-view tag), to :func:`~eaglesearch.tracking.mlflow_ui.leaderboard_url`: the runs table in the
model-training UI with the leaderboard view. Any other URL, and any other experiment, is left alone.

Everything else is MLflow's server as ``mlflow server --backend-store-uri URI --workers 1`` sets it up (artifacts
served through it, job execution off), run by uvicorn in this process::

    python -m eaglesearch.tracking.ui_server --tracking-uri sqlite:///abs/mlflow.db --port 5000
"""

from __future__ import annotations

import argparse
import json
import os

from eaglesearch.tracking.mlflow_ui import VIEW_TAG, leaderboard_url

MARKER = "eaglesearch-landing"
"""``id`` of the injected script element (a test and a reader can find it)."""


def landing_script() -> str:
    """The script added to ``index.html``: on load and on every in-page navigation, an experiment URL with no tab
    whose experiment carries the leaderboard view tag is replaced by the leaderboard URL (one tag lookup through
    MLflow's REST API per experiment, cached for the page's life)."""
    target = json.dumps(leaderboard_url("", "EXPERIMENT_ID").removeprefix("/"))
    tag = json.dumps(VIEW_TAG)
    return f"""<script id="{MARKER}">
(function () {{
  var known = {{}};
  function hasBoard(id) {{
    if (!(id in known)) {{
      known[id] = fetch("ajax-api/2.0/mlflow/experiments/get?experiment_id=" + encodeURIComponent(id))
        .then(function (r) {{ return r.ok ? r.json() : {{}}; }})
        .then(function (body) {{
          var tags = (body.experiment && body.experiment.tags) || [];
          return tags.some(function (t) {{ return t.key === {tag}; }});
        }})
        .catch(function () {{ return false; }});
    }}
    return known[id];
  }}
  function land() {{
    var m = /^#\\/experiments\\/([^\\/?]+)\\/?(\\?.*)?$/.exec(window.location.hash);
    if (!m) return;
    var id = decodeURIComponent(m[1]);
    hasBoard(id).then(function (yes) {{
      if (yes && window.location.hash === m[0]) window.location.replace({target}.replace("EXPERIMENT_ID", m[1]));
    }});
  }}
  land();
  window.addEventListener("hashchange", land);
}})();
</script>"""


def inject(html: str) -> str:
    """``index.html`` with :func:`landing_script` before ``</head>`` (unchanged when already there)."""
    if MARKER in html or "</head>" not in html:
        return html
    return html.replace("</head>", landing_script() + "</head>", 1)


def _configure(tracking_uri: str) -> None:
    """The environment ``mlflow server`` gives its workers, for a one-worker server over ``tracking_uri`` that
    serves artifacts (MLflow reads these when ``mlflow.server`` is imported)."""
    from mlflow.server.constants import (
        ARTIFACT_ROOT_ENV_VAR,
        BACKEND_STORE_URI_ENV_VAR,
        REGISTRY_STORE_URI_ENV_VAR,
        SERVE_ARTIFACTS_ENV_VAR,
    )
    from mlflow.utils.server_cli_utils import resolve_default_artifact_root

    root = resolve_default_artifact_root(True, None, tracking_uri)
    os.environ.update({BACKEND_STORE_URI_ENV_VAR: tracking_uri, REGISTRY_STORE_URI_ENV_VAR: tracking_uri,
                       ARTIFACT_ROOT_ENV_VAR: root, SERVE_ARTIFACTS_ENV_VAR: "true",
                       "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    from mlflow.server.handlers import initialize_backend_stores  # imports mlflow.server: after the environment

    initialize_backend_stores(tracking_uri, tracking_uri, root)


def serve(tracking_uri: str, host: str, port: int) -> None:
    """Run MLflow's server with the landing script on ``host:port`` until interrupted."""
    import uvicorn

    _configure(tracking_uri)
    from flask import Response, request
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import create_fastapi_app

    @flask_app.after_request
    def _add_landing(response: Response) -> Response:
        if request.path in ("/", "/index.html") and response.mimetype == "text/html":
            response.direct_passthrough = False
            response.set_data(inject(response.get_data(as_text=True)))
        return response

    uvicorn.run(create_fastapi_app(flask_app), host=host, port=port, workers=1, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", required=True, help="the MLflow store (absolute URI)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    serve(args.tracking_uri, args.host, args.port)


if __name__ == "__main__":
    main()
