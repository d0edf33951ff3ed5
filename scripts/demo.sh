#!/usr/bin/env bash
# The hybrid demo pipeline on the embedded defaults: ephemeral Prefect, the local Docker
# engine and registry that the set-up started, and the local dev cluster with a real node
# (kubelet and containerd: needs root, as the set-up does).
#
# One Prefect server for the whole demo: the dev cluster starts without saving its block,
# and `ansflow run --dev-cluster` saves the block on the run's own (ephemeral) server;
# `--dev-host` does the same for the private sshd, the SSH host of the demo's Install step.
# Extra arguments go to `ansflow run` (e.g. --json, --var greeting=hi).
# ANSFLOW_DEMO_CLUSTER names the dev cluster to use (default: local).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck source=/dev/null
source "${ANSFLOW_CACHE_DIR:-$HOME/.cache/ansflow}/env.sh"
unset PREFECT_API_URL  # the demo runs on Prefect's ephemeral server
cluster="${ANSFLOW_DEMO_CLUSTER:-local}"
ansflow dev-cluster up --name "$cluster" --no-block --real-node
cd "$ROOT/examples/demo"
# The set-up's private sshd (scripts/sshd.sh) is the demo's SSH host.
exec ansflow run pipeline.yaml --dev-cluster "$cluster" --var "cluster=$cluster" \
  --dev-host demo-host --var host=demo-host \
  --var "registry=${ANSFLOW_TEST_REGISTRY:-}" "$@"
