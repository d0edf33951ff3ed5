"""A real local Kubernetes control plane (etcd, kube-apiserver, controller manager, scheduler,
kwok nodes) on 127.0.0.1: `manager.up/down/status`, used by `ansflow dev-cluster` and the tests.
No Prefect import here; the CLI saves the cluster's block."""
