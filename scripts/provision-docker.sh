#!/usr/bin/env bash
# Install a Docker engine, BuildKit-capable, plus Compose v1 and debootstrap, where missing.
# Debian/Ubuntu only; needs root. Idempotent: a machine that has them is left alone.
set -euo pipefail
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if ((${#need[@]} == 0)); then
    echo "provision-docker: dockerd, docker-compose and debootstrap already installed"
    exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "provision-docker: missing ${need[*]}; install them (Debian: apt-get install ${need[*]}) or Docker Desktop" >&2
    exit 1
fi
echo "provision-docker: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
