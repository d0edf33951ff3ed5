// netprobe: the dev cluster's in-pod HTTP(S) client for its network tests (standard library
// only); see scripts/build-k8s.sh.
module ansflow.local/tools/netprobe

go 1.26.0
