"""Refuse a multi-node Ray cluster whose record or artifacts would stay on the driver's disk, before anything starts.

Why: on one machine every trial shares the driver's disk, so a ``sqlite:///`` record, a local artifact folder and
``<cwd>/.eaglesearch`` just work. On a cluster a trial placed on another node would open its own empty database,
train pre-aligned experts again into its own folder and leave its checkpoints where no other node can resume them;
the search would "finish" with its record split across machines. Counting the cluster's nodes is one GCS call, so
the refusal comes in seconds, with the fix for each store that is node-local.

What counts as shared: a tracking server (``http(s)://``) or a database URI (``postgresql://``, ``mysql://``...);
an artifact root that is an fsspec URL other than ``file://`` (``s3://``, ``gs://``...), or a local folder the user
declares to be a mount every node sees (``--shared-workdir`` / ``EAGLESEARCH_SHARED_WORKDIR=1``). The workdir
itself may stay node-local when the artifact root is shared: it then only holds what each node rebuilds (generated
data, tokenizers, caches), while trial checkpoints are mirrored into the artifact store.
"""

from __future__ import annotations

import os

from eaglesearch.execution.cluster import ClusterUnavailable
from eaglesearch.trial.workspace import PER_TRIAL, is_remote_url

SHARED_WORKDIR_ENV = "EAGLESEARCH_SHARED_WORKDIR"
_LOCAL_DB_SCHEMES = ("sqlite", "file", "")


class NodeLocalStore(ClusterUnavailable):
    """A multi-node cluster with a store only the driver's machine can reach; the message names each fix."""


def shared_workdir_declared(flag: bool | None = None) -> bool:
    """``--shared-workdir``, else ``$EAGLESEARCH_SHARED_WORKDIR`` (1/true/yes)."""
    if flag:
        return True
    return os.environ.get(SHARED_WORKDIR_ENV, "").strip().lower() in ("1", "true", "yes")


def alive_nodes(address: str) -> int:
    """How many nodes of the cluster at ``address`` are alive (one GCS request; call after ``prepare_cluster``)."""
    from ray._raylet import GcsClient

    from eaglesearch.execution.cluster import CONNECT_TIMEOUT_S

    nodes = GcsClient(address=address).get_all_node_info(timeout=CONNECT_TIMEOUT_S)
    return sum(1 for info in nodes.values() if info.state == 0)  # GcsNodeInfo.ALIVE


def node_local_problems(tracking_uri: str, artifacts: str, shared_workdir: bool) -> list[str]:
    """One line per store a node other than the driver's could not reach, each with its fix (empty: all shared)."""
    problems = []
    scheme = tracking_uri.partition("://")[0].lower() if "://" in tracking_uri else ""
    if scheme in _LOCAL_DB_SCHEMES and not shared_workdir:
        problems.append(f"the tracking store {tracking_uri} is a file on this machine: start a tracking server "
                        "(`mlflow server --backend-store-uri postgresql://... --serve-artifacts "
                        "--artifacts-destination s3://...`) and pass --tracking-uri http://HOST:PORT "
                        "(or set MLFLOW_TRACKING_URI)")
    elif scheme == "sqlite" and shared_workdir:
        problems.append(f"the tracking store {tracking_uri} is a SQLite file: even on a shared mount, SQLite's "
                        "locks do not work across machines; use a tracking server (--tracking-uri "
                        "http://HOST:PORT)")
    if not is_remote_url(artifacts) and artifacts != PER_TRIAL and not shared_workdir:
        problems.append(f"the artifact store {artifacts} is a folder on this machine: pass --artifacts "
                        "s3://BUCKET/PREFIX (or any fsspec URL every node can open; or set EAGLESEARCH_ARTIFACTS), "
                        f"or --shared-workdir (or {SHARED_WORKDIR_ENV}=1) if it and --workdir are on a mount every "
                        "node sees at the same path")
    return problems


def check_shared_storage(address: str, tracking_uri: str, artifacts: str, shared_workdir: bool) -> int:
    """Raise :class:`NodeLocalStore` when the cluster at ``address`` has more than one node and a store is
    node-local; returns the number of alive nodes. One node: everything is as on one machine."""
    nodes = alive_nodes(address)
    if nodes <= 1:
        return nodes
    problems = node_local_problems(tracking_uri, artifacts, shared_workdir)
    if problems:
        raise NodeLocalStore(f"the Ray cluster at {address} has {nodes} nodes, but trials on other nodes could not "
                             "reach this search's record and artifacts:\n  - " + "\n  - ".join(problems))
    return nodes
