#!/usr/bin/env bash
# Make a Python 3.11 base image without a registry: debootstrap Debian 12 and `docker import` it.
# Used where Docker Hub cannot be reached (python:3.11-slim cannot be pulled). Prints the tag;
# the docker sessions pick it up when BASE_IMAGE is not set.
set -euo pipefail
TAG=${ROADRISK_BASE_TAG:-roadrisk-base:bookworm}
if ! docker version >/dev/null 2>&1; then
    echo "provision-base-image: no Docker engine answers; skipped"
    exit 0
fi
if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "provision-base-image: $TAG already present"
    exit 0
fi
if timeout 60 docker pull -q python:3.11-slim >/dev/null 2>&1; then
    echo "provision-base-image: python:3.11-slim pulled; no local base needed"
    exit 0
fi
command -v debootstrap >/dev/null 2>&1 || { echo "provision-base-image: debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
echo "provision-base-image: debootstrap bookworm into $rootfs (about a minute)"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates,libgomp1 \
    bookworm "$rootfs" >/tmp/roadrisk-debootstrap.log 2>&1 \
    || { echo "provision-base-image: debootstrap failed, see /tmp/roadrisk-debootstrap.log" >&2; exit 1; }
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc "$rootfs"/usr/share/man
tar -C "$rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' - "$TAG" >/dev/null
echo "provision-base-image: built $TAG"
