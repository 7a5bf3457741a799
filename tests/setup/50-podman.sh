#!/usr/bin/env bash
# A container engine for tests/container/ (builds and runs examples/container/Dockerfile): Debian's podman with
# runc, and a Debian bookworm base image made with debootstrap from the Debian archive (no image registry is
# reachable from the build machines, so python:3.11-slim cannot be pulled; the Dockerfile takes BASE=).
# The engine's settings for this kind of VM (cgroup v1 hybrid: crun refuses it, runc works; setrlimit to the
# rootful defaults is refused, lower limits are fine) go into a containers.conf of our own ($CONTAINERS_CONF),
# not into /etc.  Exports LOWLAT_PODMAN and CONTAINERS_CONF into $LOWLAT_CACHE/env.sh once `podman run` works.
# Idempotent: the base image is made once and kept in podman's store.
set -euo pipefail
LOWLAT_CACHE="${LOWLAT_CACHE:-$HOME/.cache/lowlat}"
BASE=localhost/lowlat-base:bookworm
CONF="$LOWLAT_CACHE/containers.conf"
mkdir -p "$LOWLAT_CACHE"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

need=()
for b in podman runc debootstrap; do command -v "$b" >/dev/null || need+=("$b"); done
if ((${#need[@]})); then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends podman runc debootstrap \
        uidmap netavark aardvark-dns fuse-overlayfs slirp4netns
fi
cat > "$CONF" <<CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$CONF"

if ! podman image exists "$BASE"; then
    root="$(mktemp -d)/rootfs"
    $SUDO debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" \
        http://deb.debian.org/debian >"$LOWLAT_CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$LOWLAT_CACHE/debootstrap.log"; exit 1; }
    $SUDO tar -C "$root" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
    $SUDO rm -rf "$(dirname "$root")"
fi
if podman run --rm --network host "$BASE" python3 -c 'import venv' >/dev/null 2>"$LOWLAT_CACHE/podman-smoke.log"; then
    for line in "export LOWLAT_PODMAN=$(command -v podman)" "export CONTAINERS_CONF=$CONF" \
                "export LOWLAT_CONTAINER_BASE=$BASE"; do
        grep -qxF "$line" "$LOWLAT_CACHE/env.sh" 2>/dev/null || echo "$line" >> "$LOWLAT_CACHE/env.sh"
    done
    echo "podman $(podman --version | awk '{print $3}') runs containers here (base $BASE)"
else
    echo "podman cannot run a container here: $(tail -1 "$LOWLAT_CACHE/podman-smoke.log")" >&2
fi
