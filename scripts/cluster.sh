#!/usr/bin/env bash
# A multi-node eaglesearch cluster on this machine (PostgreSQL + MLflow server + S3 (moto) + a Ray head and two
# worker nodes in their own mount namespaces), for trying `eaglesearch run --address` the way it runs on a lab's
# machines. Needs root and Debian's postgresql. See README, "Running on a cluster".
#
#   bash scripts/cluster.sh up /tmp/es-cluster      # prints the addresses; credentials go to /tmp/es-cluster/env.sh
#   source /tmp/es-cluster/env.sh && cd /tmp/es-cluster/driver && eaglesearch run ...
#   bash scripts/cluster.sh down /tmp/es-cluster    # stops exactly the processes `up` started, by PID
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
export OMP_WAIT_POLICY=PASSIVE
# This checkout's package, whatever the working directory holds (-P: the cwd is not put on sys.path).
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -P -m eaglesearch.execution.local_cluster "$@"
