#!/usr/bin/env bash
# Run roadrisk in the container that fits this machine, without make.
# It picks the image, says why, and hands over to the same nox sessions `make run-docker*` use.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    cat <<'HELP'
usage: scripts/docker-run.sh [options] [-- extra roadrisk train flags]

Picks the image for this machine: an NVIDIA GPU with the NVIDIA runtime -> the GPU image;
macOS on Apple silicon -> explains why Docker cannot use the Apple GPU (and runs the MPS image,
which shows it, unless --native); anything else -> the CPU image.

options:
  --profile P        smoke | quick (default) | full
  --model M          tabm | realmlp | hgb (default: the profile's)
  --device D         auto | cpu | cuda | mps (default: the image's)
  --strict-device    exit 3 instead of falling back to the CPU
  --cpu | --gpu | --mps   use this image, skip detection
  --native           train on the host instead (make run-native): the way to the Apple GPU
  --data-dir DIR     train on these Kaggle files (mounted read-only)
  --cpus N           limit the container to N CPUs
  --dry-run          say which image and why, run nothing
  -h, --help         this text
HELP
}

variant="" native=0 dry=0 extra=()
while (($#)); do
    case "$1" in
        --profile) export PROFILE="$2"; shift 2 ;;
        --model) export MODEL="$2"; shift 2 ;;
        --device) export DEVICE="$2"; shift 2 ;;
        --strict-device) extra+=(--strict-device); shift ;;
        --cpu) variant=cpu; shift ;;
        --gpu) variant=gpu; shift ;;
        --mps) variant=mps; shift ;;
        --native) native=1; shift ;;
        --data-dir) export DATA_DIR="$2"; shift 2 ;;
        --cpus) export CPUS="$2"; shift 2 ;;
        --dry-run) dry=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; extra+=("$@"); break ;;
        *) echo "error: docker-run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
export ARGS="${ARGS:-} ${extra[*]:-}"

apple_silicon=0
if [[ "$(uname -s)" == "Darwin" && "$(uname -m)" == "arm64" ]]; then apple_silicon=1; fi

if ((native)); then
    echo "docker-run: --native: training on the host, where PyTorch can reach the GPU (MPS or CUDA)"
    ((dry)) && exit 0
    exec make run-native
fi

if [[ -z "$variant" ]]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 \
        && docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia; then
        variant=gpu; why="an NVIDIA GPU and the NVIDIA container runtime are present"
    elif ((apple_silicon)); then
        variant=mps; why="macOS on Apple silicon"
        cat <<'MAC'
docker-run: this is a Mac with Apple silicon. Docker cannot give a container its GPU:
  Metal (what PyTorch's MPS backend uses) is a macOS host API, and Docker Desktop runs every
  container inside a Linux VM, where PyTorch is a Linux build with no MPS at all.
  The MPS image below will show exactly that and train on the CPU.
  For the Apple GPU, train on the host:  scripts/docker-run.sh --native   (= make run-native)
MAC
    else
        variant=cpu; why="no NVIDIA runtime found"
    fi
else
    why="chosen with --$variant"
fi
session="run_docker($variant)"
echo "docker-run: image $variant ($why) -> nox -s $session"
((dry)) && exit 0

if [[ ! -x .tools/bin/nox ]]; then
    python3 -m venv .tools && .tools/bin/pip install --quiet -r requirements/tools.txt
fi
exec .tools/bin/nox -s "$session"
