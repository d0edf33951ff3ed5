# Dev-cluster binaries (etcd, kube-apiserver & co., kubectl, kubelet, kwok, helm), built from the
# pinned tools modules with the machine's Go into $ANSFLOW_CACHE_DIR/k8s-bin/<version-key>/ when
# missing (a fresh machine pays ~10-25 min once; afterwards this is instant), and the real
# node's container runtime from Debian (containerd, runc, the CNI plugins: `up --real-node`).
# Sourced by scripts/setup.sh: uses $ROOT, $ANSFLOW_CACHE_DIR, $ANSFLOW_ENV_FILE.
# Set ANSFLOW_SKIP_K8S_BUILD=1 to skip (the dev cluster and its tests are then unavailable).
if [ "${ANSFLOW_SKIP_K8S_BUILD:-0}" = "1" ]; then
  echo "k8s: skipped (ANSFLOW_SKIP_K8S_BUILD=1)" >&2
else
  need_apt ca-certificates containerd runc containernetworking-plugins
  k8s_bin_dir="$(bash "$ROOT/scripts/build-k8s.sh")"
  export ANSFLOW_K8S_BIN="$k8s_bin_dir"
  echo "export ANSFLOW_K8S_BIN=\"$k8s_bin_dir\"" >> "$ANSFLOW_ENV_FILE"
  unset k8s_bin_dir
fi
