#!/usr/bin/env bash
# Builds Duet's container image (deploy/docker/Dockerfile) with the tools Debian 12 ships:
# podman/buildah with runc, and a debian:bookworm base made locally by debootstrap, so it
# needs no docker daemon and no container registry, only deb.debian.org.
#
#   bash deploy/docker/build-image.sh            # -> duet:latest (localhost/duet:latest)
#   DUET_IMAGE=duet:dev bash deploy/docker/build-image.sh
#
# Phases, each timed (wall seconds printed at the end):
#   packages  apt-get install podman buildah runc debootstrap (only the missing ones)
#   base      debootstrap --variant=minbase bookworm, imported as debian:bookworm
#             (skipped when `podman image exists debian:bookworm`)
#   deps      the Dockerfile's deps stage (deploy/local/install-deps.sh --build)
#   compile   the build stage (cmake + ninja, the four binaries, runtime package list)
#   runtime   the runtime stage: runtime packages only, user 65532 -> duet:latest
# The podman builds run at nice 19 (a shared build machine). The build context is the
# repository this script lives in, less .containerignore (build/, out/, runs/).
#
# Why the flags: Debian 12's podman defaults to crun, which refuses to start containers on
# a host without CAP_SYS_RESOURCE and with hybrid cgroups (a VM or container host such as
# the CI machines); runc with the cgroupfs manager works. Container networking (netavark)
# is not available there either, so builds and runs use the host network; runs also pin
# the rlimits (nofile, nproc) that the runtime could not raise. tests/docker_image_test.sh
# runs a short job from the image with the same flags.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
IMAGE="${DUET_IMAGE:-duet:latest}"
MIRROR="${DUET_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DUET_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

SUDO=""
PODMAN=(podman --runtime /usr/sbin/runc --cgroup-manager=cgroupfs)
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; PODMAN=(sudo "${PODMAN[@]}"); fi
BUILD_FLAGS=(--network=host --pull=never -f deploy/docker/Dockerfile)

declare -a PHASES=()
phase_start=0
begin() { phase_start=$(date +%s); echo "build-image: == $1 ($(date -u +%H:%M:%S) UTC)" >&2; }
end() {
  local s=$(($(date +%s) - phase_start))
  PHASES+=("$(printf '%-9s %5d s  (%dm%02ds)  %s' "$1" "$s" $((s / 60)) $((s % 60)) "${2:-}")")
  echo "build-image: == $1 done in ${s} s" >&2
}

# ---- packages ---------------------------------------------------------------------------
begin packages
missing=()
for p in podman buildah runc debootstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q "${missing[@]}"
fi
end packages "${missing[*]:-(all present)}"

# ---- base -------------------------------------------------------------------------------
begin base
if "${PODMAN[@]}" image exists debian:bookworm; then
  end base "debian:bookworm exists, not rebuilt"
else
  rootfs="$(mktemp -d /var/tmp/duet-bookworm.XXXXXX)"
  trap '$SUDO rm -rf "$rootfs"' EXIT
  nice -n 19 $SUDO debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR"
  # The sources of Debian's own image: the release, its updates and the security archive
  # (install-deps.sh and the runtime stage install the current point/security versions).
  $SUDO rm -f "$rootfs/etc/apt/sources.list"
  $SUDO tee "$rootfs/etc/apt/sources.list.d/debian.sources" >/dev/null <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  $SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/log/*.log "$rootfs"/debootstrap
  $SUDO tar -C "$rootfs" --numeric-owner -c . \
    | "${PODMAN[@]}" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - debian:bookworm >/dev/null
  $SUDO rm -rf "$rootfs"
  trap - EXIT
  end base "debootstrap minbase, $("${PODMAN[@]}" image inspect --format '{{.Size}}' debian:bookworm) bytes"
fi

# ---- deps, compile, runtime (one Dockerfile, stage by stage; layers are cached) ---------
begin deps
nice -n 19 "${PODMAN[@]}" build "${BUILD_FLAGS[@]}" --target deps -t duet-build-deps:latest .
end deps "stage deps -> duet-build-deps:latest"

begin compile
nice -n 19 "${PODMAN[@]}" build "${BUILD_FLAGS[@]}" --target build -t duet-build:latest .
end compile "stage build -> duet-build:latest"

begin runtime
nice -n 19 "${PODMAN[@]}" build "${BUILD_FLAGS[@]}" -t "$IMAGE" .
end runtime "stage runtime -> $IMAGE"

size="$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")"
echo "build-image: $IMAGE: $size bytes ($((size / 1024 / 1024)) MiB)"
"${PODMAN[@]}" images
echo "build-image: phase wall times:"
printf '  %s\n' "${PHASES[@]}"
