#!/usr/bin/env bash
# Builds the image a flow run starts in (a Kubernetes pool's Job, a Docker pool's container):
# a Debian root filesystem made by mmdebstrap from Debian's packages (nothing is pulled),
# Python 3.11 and git from Debian, and the project installed from its wheel into the venv
# /opt/ansflow with its dependencies at the versions of requirements.lock (the lock is the
# constraint file of the wheel's own dependencies). Imported into the local Docker engine and
# pushed to the set-up's local registry as
#
#     $REGISTRY/ansflow/worker:<project version>-<first 12 hex of the lock's sha256>
#
# and rebuilt only when that tag is not in the registry yet (a new version or a new lock).
#
#   scripts/build-worker-image.sh          build and push when missing; print the reference
#   scripts/build-worker-image.sh --ref    only print the reference the current tree builds
#   scripts/build-worker-image.sh --force  build and push even when the tag exists
#
# REGISTRY: $ANSFLOW_WORKER_REGISTRY, else the set-up's anonymous registry
# ($ANSFLOW_TEST_REGISTRY, 127.0.0.1:PORT). Needs root (mmdebstrap's root mode, chroot), the
# Docker engine of the set-up (DOCKER_HOST), Debian's and PyPI's package registries. Prints
# timings to stderr.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUITE="${ANSFLOW_WORKER_SUITE:-bookworm}"   # Debian 12: python3 is 3.11, as the lock
# The Debian mirror: ANSFLOW_WORKER_MIRROR, else the one this machine's apt uses (its sources,
# one-line or deb822 format), so no registry address is written here.
host_mirror() {
  { grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) {print $i; exit}}'
    grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
  } | grep -v security | head -n 1
}
MIRROR="${ANSFLOW_WORKER_MIRROR:-$(host_mirror)}"
if [ -z "$MIRROR" ]; then
  echo "build-worker-image: no Debian mirror: set ANSFLOW_WORKER_MIRROR" >&2
  exit 2
fi
REGISTRY="${ANSFLOW_WORKER_REGISTRY:-${ANSFLOW_TEST_REGISTRY:-}}"
if [ -z "$REGISTRY" ]; then
  echo "build-worker-image: no registry: set ANSFLOW_WORKER_REGISTRY or source the set-up's" \
       "env.sh (ANSFLOW_TEST_REGISTRY)" >&2
  exit 2
fi
if ! [[ "$REGISTRY" =~ ^(127\.0\.0\.1|localhost):[0-9]{1,5}$ ]]; then
  echo "build-worker-image: registry ${REGISTRY:0:200}: give a loopback one (127.0.0.1:PORT)" >&2
  exit 2
fi
VERSION=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' "$ROOT/pyproject.toml" | head -1)
LOCK_HASH=$(sha256sum "$ROOT/requirements.lock" | cut -c1-12)
TAG="$VERSION-$LOCK_HASH"
REF="$REGISTRY/ansflow/worker:$TAG"

if [ "${1:-}" = "--ref" ]; then echo "$REF"; exit 0; fi

present() {
  curl -fs -o /dev/null --max-time 10 \
    -H "Accept: application/vnd.docker.distribution.manifest.v2+json" \
    -H "Accept: application/vnd.oci.image.manifest.v1+json" \
    "http://$REGISTRY/v2/ansflow/worker/manifests/$TAG"
}
if [ "${1:-}" != "--force" ] && present; then
  echo "build-worker-image: $REF is in the registry" >&2
  echo "$REF"
  exit 0
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "build-worker-image: installing Debian's mmdebstrap" >&2
  apt-get install -y -q mmdebstrap >/dev/null
fi
PYTHON="${PYTHON:-python3}"
[ -x "${ANSFLOW_CACHE_DIR:-$HOME/.cache/ansflow}/venv/bin/python" ] && \
  PYTHON="${ANSFLOW_CACHE_DIR:-$HOME/.cache/ansflow}/venv/bin/python"

WORK=$(mktemp -d /tmp/ansflow-worker-image.XXXXXX)
cleanup() {
  for m in proc dev/pts dev sys; do
    mountpoint -q "$WORK/rootfs/$m" 2>/dev/null && umount -l "$WORK/rootfs/$m"
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
started=$SECONDS

echo "build-worker-image: the project's wheel ..." >&2
"$PYTHON" -m pip wheel -q --no-deps -w "$WORK/dist" "$ROOT" >&2
WHEEL=$(ls "$WORK"/dist/*.whl)
echo "build-worker-image: $(basename "$WHEEL") ($((SECONDS - started)) s)" >&2

t=$SECONDS
echo "build-worker-image: Debian $SUITE root filesystem (mmdebstrap) ..." >&2
mmdebstrap --quiet --mode=root --variant=minbase \
  --include=python3,python3-venv,git,ca-certificates,tzdata \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/C*' \
  --aptopt='Acquire::Retries "3"' \
  "$SUITE" "$WORK/rootfs" "$MIRROR" >&2
echo "build-worker-image: root filesystem ($((SECONDS - t)) s)" >&2

t=$SECONDS
echo "build-worker-image: the venv /opt/ansflow (wheel + locked dependencies) ..." >&2
mkdir -p "$WORK/rootfs/tmp/ansflow-build"
cp "$WHEEL" "$ROOT/requirements.lock" "$WORK/rootfs/tmp/ansflow-build/"
# pip runs in the image's own Python (Debian's 3.11.2: its environment markers pick the
# dependencies), reaching the package index as this host does: its resolver and its CA
# bundle (a TLS-inspecting proxy's CA may be in it), both removed afterwards.
cp /etc/resolv.conf "$WORK/rootfs/etc/resolv.conf"
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$WORK/rootfs/tmp/ansflow-build/ca.crt"
mount -t proc proc "$WORK/rootfs/proc"
chroot "$WORK/rootfs" /usr/bin/python3 -m venv /opt/ansflow
chroot "$WORK/rootfs" env -i PATH=/usr/bin:/bin /opt/ansflow/bin/pip install -q --no-cache-dir \
  --disable-pip-version-check --cert /tmp/ansflow-build/ca.crt --default-timeout 180 \
  -c /tmp/ansflow-build/requirements.lock "/tmp/ansflow-build/$(basename "$WHEEL")" >&2
chroot "$WORK/rootfs" /opt/ansflow/bin/python -c "import ansflow.flows.pipeline" >&2
umount -l "$WORK/rootfs/proc"
rm -rf "$WORK/rootfs/tmp/ansflow-build" "$WORK/rootfs/var/lib/apt/lists/"* \
  "$WORK/rootfs/var/cache/apt/"*.bin
IMAGE_HOME="$WORK/rootfs/root"  # the image's own root home: pip's cache goes
rm -rf "${IMAGE_HOME:?}/.cache"
: > "$WORK/rootfs/etc/resolv.conf"
echo "build-worker-image: venv ($((SECONDS - t)) s)" >&2

t=$SECONDS
echo "build-worker-image: importing and pushing $REF ..." >&2
tar -C "$WORK/rootfs" --numeric-owner -cf - . | docker import \
  --change 'ENV PATH=/opt/ansflow/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV PYTHONUNBUFFERED=1' --change 'ENV LANG=C.UTF-8' --change 'WORKDIR /' \
  --change "LABEL org.opencontainers.image.version=$VERSION ansflow.lock-sha256=$LOCK_HASH" \
  --change 'CMD ["python"]' - "$REF" >/dev/null
docker push -q "$REF" >&2
SIZE=$(docker image inspect -f '{{.Size}}' "$REF")
echo "build-worker-image: pushed ($((SECONDS - t)) s); image $((SIZE / 1048576)) MiB;" \
     "total $((SECONDS - started)) s" >&2
echo "$REF"
