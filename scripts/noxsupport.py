"""What noxfile.py's sessions need, so that the noxfile stays a list of thin sessions.

Standard library only: nox imports this before any venv (or roadrisk) exists, and the tests import it
as a plain module (tests/test_platforms.py, tests/test_docker.py). Nothing here imports nox: a helper
that needs a session is handed one (``run``, ``log``, ``warn`` and ``error`` are all it uses), and a
helper that finds a problem raises ``Problem`` with the one line to show, which the noxfile turns into
``session.error``.

Sections: environment knobs; the host venv (and its pandas-2 overlay); the platform resolution matrix
(make check-platforms); the images and containers; the compose Ray cluster.
"""

from __future__ import annotations

import concurrent.futures
import glob
import hashlib
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: nox itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"


class Problem(Exception):
    """A one-line reason a session cannot go on, and what to do about it."""


# ---------------------------------------------------------------- environment knobs

def knob(name: str, default: str = "") -> str:
    """An environment knob: make exports every knob it names, unset ones as "", which means the default."""
    return os.environ.get(name) or default


def extra_args(posargs: list[str] = ()) -> list[str]:
    """ARGS='...' (shell words) and then nox's posargs: extra flags for the command a session runs."""
    return [*shlex.split(knob("ARGS")), *posargs]


def runs_dir() -> Path:
    """Where runs land and compare looks: RUNS_DIR, else runs/ in the repository."""
    return Path(knob("RUNS_DIR", str(ROOT / "runs"))).resolve()


def cache_dir() -> Path:
    return Path(knob("ROADRISK_CACHE_DIR", str(Path.home() / ".cache" / "roadrisk"))).resolve()


def host_user() -> str:
    """uid:gid that owns what a container writes: the caller's, unless HOST_UID/HOST_GID say otherwise."""
    return f"{knob('HOST_UID', str(os.getuid()))}:{knob('HOST_GID', str(os.getgid()))}"


def train_args(posargs: list[str] = ()) -> list[str]:
    """`roadrisk train` flags from PROFILE, MODEL, RECIPE, DEVICE and ARGS. No PROFILE: the trainer's own
    default (quick; full with a data directory, as real data deserves)."""
    args = []
    for flag, name in (("--profile", "PROFILE"), ("--model", "MODEL"), ("--recipe", "RECIPE")):
        if knob(name):
            args += [flag, knob(name)]
    return [*args, "--device", knob("DEVICE", "auto"), *extra_args(posargs)]


def tracking() -> bool:
    """TRACK=mlflow: log runs to MLflow (docs/tracking.md); unset, empty or none: do not."""
    value = knob("TRACK", "none")
    if value not in ("mlflow", "none"):
        raise Problem(f"TRACK must be mlflow or none, not {value!r}: e.g. TRACK=mlflow make run-docker")
    return value == "mlflow"


def track_args() -> list[str]:
    """`--track mlflow` for a host command when TRACK=mlflow (containers have no mlflow: `roadrisk track` logs theirs)."""
    return ["--track", "mlflow"] if tracking() else []


def mlflow_store_uri() -> str:
    """The default store `roadrisk train --track mlflow` writes (src/roadrisk/tracking.py, default_store)."""
    return "sqlite:///" + str(runs_dir() / "mlflow.db")


def run_folders(runs: Path) -> set[Path]:
    """The run folders at runs/<label>/<run>/: what a container session compares before and after it trains."""
    return {run_file.parent for run_file in runs.glob("*/*/run.json")}


# ---------------------------------------------------------------- the platform table and the host venv

def load_platform_table():
    """src/roadrisk/platforms.py, by path: the host venv needs its answer before any venv (or roadrisk) exists."""
    spec = importlib.util.spec_from_file_location("roadrisk_platform_table", ROOT / "src" / "roadrisk" / "platforms.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


platforms = load_platform_table()
HOST_VENV = Path(knob("ROADRISK_VENV", str(ROOT / ".nox" / "host")))
PANDAS_2 = ["pandas==2.3.3", "pytz==2025.2"]  # the newest pandas 2 (pytz: a pandas 2 dependency pandas 3 dropped)


def torch_index() -> str:
    return knob("TORCH_INDEX_URL", platforms.CPU_INDEX)


def pip_sources() -> list[str]:
    return ["--find-links", knob("WHEELHOUSE")] if knob("WHEELHOUSE") else []


def bin_dir(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin")


def host_torch():
    """This host's row of the platform table, the pip arguments for its torch, and where it comes from.
    A machine the table does not cover raises Problem, before anything is downloaded."""
    try:
        row = platforms.this_machine(knob("TORCH"))
        platforms.check_python(row, platform.python_version())
    except platforms.Unsupported as error:
        raise Problem(str(error)) from None
    args, source = platforms.torch_pip_args(row, platforms.python_tag(), platforms.wheelhouses(os.environ),
                                            torch_index())
    return row, args, source


def venv_stamp(pyproject_text: str, constraints: str, torch_args: list[str]) -> str:
    """What the venv's contents depend on: the pins, the [project] tables, the torch choice, the Python.
    Not all of pyproject.toml: a lint or pytest setting must not cost a one-minute rebuild. (The tables'
    lines as text, as every existing venv's stamp was made: reading them with tomllib would rebuild them all.)"""
    project, in_project = [], False
    for line in pyproject_text.splitlines():
        if line.startswith("["):
            in_project = line.startswith("[project")
        if in_project:
            project.append(line)
    digest = hashlib.sha256(constraints.encode())
    digest.update(json.dumps([project, torch_args, sys.version]).encode())
    return digest.hexdigest()


def _is_current(venv: Path, stamp: str) -> bool:
    stamp_file = venv / ".roadrisk-stamp"
    return stamp_file.is_file() and stamp_file.read_text() == stamp


def ensure_host_venv(session, venv: Path | None = None) -> Path:
    """Create or refresh the shared host venv (torch, roadrisk editable with [test,ray,track]); return its bin dir."""
    venv = venv or HOST_VENV
    row, torch_args, source = host_torch()
    constraints = platforms.constraints_for(row, CONSTRAINTS.read_text())
    stamp = venv_stamp((ROOT / "pyproject.toml").read_text(), constraints, [*torch_args, *row.packages])
    bin_path = bin_dir(venv)
    if not _is_current(venv, stamp):
        session.log(f"building the host venv at {venv}; {row.machine}: {source}")
        if row.older:
            session.warn(f"torch {row.torch}, not the project's {platforms.PROJECT_TORCH}: {row.why}")
        session.run(sys.executable, "-m", "venv", "--clear", str(venv), external=True)
        (venv / "constraints.txt").write_text(constraints)  # the lock, with this row's companions
        pip = [str(bin_path / "python"), "-m", "pip", "install", "--quiet", *pip_sources(),
               "-c", str(venv / "constraints.txt")]
        session.run(*pip, *torch_args, *row.packages, external=True)  # packages: the row's xgboost build
        # the tests use a real local Ray and a real MLflow store; `roadrisk track` logs container runs from here
        session.run(*pip, "-e", f"{ROOT}[test,ray,track]", external=True)
        (venv / ".roadrisk-stamp").write_text(stamp)
    return bin_path


def _purelib(bin_path: Path) -> str:
    return subprocess.run([str(bin_path / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def ensure_pandas2_venv(session, host_bin: Path) -> Path:
    """The host venv with pandas 2 in front of its pandas 3: a small venv holding pandas 2 whose
    site-packages also points at the host venv's (torch and the rest are not installed twice)."""
    host = host_bin.parent
    overlay = host.with_name(host.name + "-pandas2")
    stamp = (host / ".roadrisk-stamp").read_text() + repr(PANDAS_2)
    bin_path = bin_dir(overlay)
    if not _is_current(overlay, stamp):
        session.log(f"building {overlay}: {', '.join(PANDAS_2)} over the host venv")
        session.run(sys.executable, "-m", "venv", "--clear", str(overlay), external=True)
        session.run(str(bin_path / "python"), "-m", "pip", "install", "--quiet", "--no-deps", *pip_sources(),
                    *PANDAS_2, external=True)
        # addsitedir, not a bare path: it also runs the host's .pth files (the editable roadrisk install).
        Path(_purelib(bin_path), "zz-roadrisk-host.pth").write_text(
            f"import site; site.addsitedir({_purelib(host_bin)!r})\n")
        (overlay / ".roadrisk-stamp").write_text(stamp)
    return bin_path


def check_pandas(bin_path: Path, major: str) -> str:
    """The venv's pandas version, which must be `major`.x (the suite runs once with each)."""
    version = subprocess.run([str(bin_path / "python"), "-c", "import pandas; print(pandas.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    if not version.startswith(major + "."):
        raise Problem(f"expected pandas {major}.x in {bin_path.parent}, found {version or 'none'}")
    return version


# ---------------------------------------------------------------- the platform matrix (make check-platforms)

# uv resolves for a target platform and Python from metadata alone. pip cannot stand in: its --platform
# filters wheel tags but evaluates markers for the machine it runs on (docs/platforms.md).
UV = "uv==0.13.9"


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=5).close()
        return True
    except OSError:
        return False


def resolve_row(uv: str, row, python: str, index: str, work: Path) -> tuple[str, dict, str, str]:
    """Resolve one row for one Python: (torch resolved, pins, where torch came from, problem or "")."""
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
        return "-", {}, source, first_cause(done.stderr)
    pins = platforms.resolved_pins(done.stdout)
    return pins.get("torch", "-"), pins, source, "; ".join(row_problems(row, requirement, pins))


def row_problems(row, requirement: str, pins: dict[str, str]) -> list[str]:
    """What is wrong with a resolution the resolver accepted: companions, torch, CUDA wheels, xgboost."""
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
    return problems


def first_cause(stderr: str) -> str:
    """The resolver's first reason, which names the package: 'Because torch==2.13.0 has no wheels ...'."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    cause = next((line for line in lines if line.startswith("cause:")), None) or next(
        (line for line in lines if line.startswith("error:")), lines[-1] if lines else "uv failed, no output")
    return cause.removeprefix("cause:").strip().split(", we can conclude")[0]


def resolution_matrix(uv: str, index: str) -> tuple[list[str], list[str]]:
    """Every platform row for every Python, resolved four at a time: (table lines, failures)."""
    jobs = [(row, python) for row in platforms.ROWS for python in platforms.PYTHONS]
    with tempfile.TemporaryDirectory() as work, concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda job: resolve_row(uv, *job, index, Path(work)), jobs))
    lines = [f"{'platform':<58} {'python':<7} {'torch':<12} {'numpy':<7} {'pandas':<7} {'xgboost':<18} from"]
    failures = []
    for (row, python), (torch, pins, note, problem) in zip(jobs, results):
        xgb = next((f"{name} {pins[name]}" for name in ("xgboost-cpu", "xgboost") if name in pins), "-")
        lines.append(f"{row.machine[:58]:<58} {python:<7} {torch:<12} {pins.get('numpy', '-'):<7} "
                     f"{pins.get('pandas', '-'):<7} {xgb:<18} " + (f"FAIL: {problem}" if problem else note))
        if problem:
            failures.append(f"{row.machine}, Python {python}: {problem}")
    return lines, failures


# ---------------------------------------------------------------- images and containers

LOCAL_BASE_IMAGE = "roadrisk-base:bookworm"  # made by scripts/provision-base-image.sh where no registry answers
PUBLIC_BASE_IMAGE = "python:3.11-slim"
WHEELHOUSE_IN_CONTEXT = ROOT / "docker" / ".wheelhouse"
IMAGE_SOURCE_LABEL = "org.opencontainers.image.source=https://github.com/roadrisk/roadrisk"


VARIANTS_FILE = ROOT / "docker" / ".env"  # the variant table; compose reads it by itself (its .env)
VARIANT_FIELDS = ("IMAGE", "TORCH", "TARGET", "EXTRAS", "LABEL", "DEVICE", "GPUS")


@dataclass(frozen=True)
class Variant:
    """One image and how a container of it runs: a row of docker/.env."""

    name: str
    tag: str
    torch: str  # docker/Dockerfile's TORCH build argument: cpu | cuda
    target: str  # the Dockerfile stage: final (the TORCH build's image) or mps (the CPU image asking for MPS)
    extras: str  # pyproject.toml optional dependencies the image installs (EXTRAS)
    label: str  # the run label
    device: str  # the --device a run gets when DEVICE is unset
    gpus: bool  # docker run --gpus all


def read_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines and # comments: the part of the .env format that compose and this reader agree on."""
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def read_variants(text: str) -> dict[str, Variant]:
    """ROADRISK_<VARIANT>_<FIELD>=value lines as Variants; CPU_RAY is the variant cpu-ray."""
    rows: dict[str, dict[str, str]] = {}
    for key, value in read_env_file(text).items():
        name, _, field = key.removeprefix("ROADRISK_").rpartition("_")
        if key.startswith("ROADRISK_") and field in VARIANT_FIELDS:
            rows.setdefault(name.lower().replace("_", "-"), {})[field] = value
    missing = [f"{name}: {', '.join(f for f in VARIANT_FIELDS if f not in row)}" for name, row in rows.items()
               if set(row) != set(VARIANT_FIELDS)]
    if missing:
        raise Problem(f"{VARIANTS_FILE}: variants without every field ({'; '.join(missing)}): each needs "
                      + ", ".join(VARIANT_FIELDS))
    return {name: Variant(name, row["IMAGE"], row["TORCH"], row["TARGET"], row["EXTRAS"], row["LABEL"], row["DEVICE"],
                          row["GPUS"] == "all") for name, row in rows.items()}


VARIANTS = read_variants(VARIANTS_FILE.read_text())


def docker_cli() -> str:
    """A docker CLI that can build with BuildKit: $DOCKER, else the first on PATH that has buildx or
    predates it (before 23.0 BuildKit was built in). A machine can hold a new CLI without the buildx
    plugin next to a distribution's older one; only the latter builds there."""
    if knob("DOCKER"):
        return knob("DOCKER")
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


def engine_problem(variant: Variant) -> str:
    """One clear line for each way Docker can be missing, before anything is built; "" when it is all there."""
    cli = docker_cli()
    if not shutil.which(cli):
        return ("no docker CLI on PATH: install Docker Desktop (macOS) or Docker Engine (Linux), "
                "or train on the host with: make run-native")
    if subprocess.run([cli, "version", "--format", "{{.Server.Version}}"], capture_output=True).returncode != 0:
        return ("the Docker engine is not running (docker version got no server): start Docker Desktop, "
                "or `sudo systemctl start docker`, then retry")
    if variant.gpus and "nvidia" not in subprocess.run([cli, "info", "--format", "{{json .Runtimes}}"],
                                                       capture_output=True, text=True).stdout:
        return ("no NVIDIA runtime in this Docker engine (docker info lists none): install the NVIDIA "
                "Container Toolkit and an NVIDIA driver, or use make run-docker / make run-native")
    return ""


def base_image() -> str:
    """BASE_IMAGE, else the offline base where it exists (it is made for this engine's architecture alone,
    so not with PLATFORMS), else the public slim image."""
    if knob("BASE_IMAGE"):
        return knob("BASE_IMAGE")
    if not knob("PLATFORMS") and subprocess.run([docker_cli(), "image", "inspect", LOCAL_BASE_IMAGE],
                                                capture_output=True).returncode == 0:
        return LOCAL_BASE_IMAGE
    return PUBLIC_BASE_IMAGE


def fill_wheelhouse() -> None:
    """Link the WHEELHOUSE's wheels into the build context, where the build can mount them."""
    WHEELHOUSE_IN_CONTEXT.mkdir(parents=True, exist_ok=True)
    source = knob("WHEELHOUSE") or next(
        (d for d in platforms.wheelhouses(os.environ) if glob.glob(os.path.join(d, "torch-*.whl"))), "")
    for wheel in glob.glob(os.path.join(source, "*.whl")) if source else []:
        target = WHEELHOUSE_IN_CONTEXT / os.path.basename(wheel)
        if not target.exists():
            try:
                os.link(wheel, target)
            except OSError:
                shutil.copy2(wheel, target)


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def build_command(variant: Variant, base: str) -> list[str]:
    """`docker build` for one variant (the CLI not included): the one Dockerfile, the variant's stage and torch."""
    args = ["build", "--network=host", "-f", "docker/Dockerfile", "--target", variant.target, "-t", variant.tag,
            "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"GIT_COMMIT={git_commit()}",
            "--build-arg", f"TORCH={variant.torch}", "--build-arg", f"EXTRAS={variant.extras}",
            "--build-arg", f"TORCH_INDEX_URL={torch_index()}"]
    targets = knob("PLATFORMS")
    if targets:  # the Dockerfile asks the platform table inside the build, so any architecture gets its torch
        # several platforms at once need buildx (and, to run a foreign one, QEMU): docs/platforms.md
        args = (["buildx", *args, "--load"] if "," in targets else args) + ["--platform", targets]
    if knob("PIP_CERT") and os.path.isfile(knob("PIP_CERT")):
        args += ["--secret", f"id=pip_cert,src={knob('PIP_CERT')}"]
    return [*args, str(ROOT)]


def run_command(variant: Variant, posargs: list[str] = ()) -> list[str]:
    """`docker run` for one training run in a variant's image (the CLI not included)."""
    run = ["run", "--rm", "--network", "none", "--user", host_user(), *(["--gpus", "all"] if variant.gpus else []),
           "-v", f"{runs_dir()}:/work/runs", "-v", f"{cache_dir()}:/cache",
           # the run folder as the user opens it: the host's path of the mount (records.shown)
           "-e", f"ROADRISK_HOST_PATH=/work/runs={runs_dir()}"]
    if knob("CPUS"):
        run += ["--cpus", knob("CPUS")]
    train = ["train", "--label", variant.label, "--runs-dir", "/work/runs"]
    if knob("DATA_DIR"):
        run += ["-v", f"{Path(knob('DATA_DIR')).resolve()}:/data:ro"]
        train += ["--data-dir", "/data"]
    args = train_args(posargs)
    if not knob("DEVICE"):
        args[args.index("--device") + 1] = variant.device
    return [*run, variant.tag, *train, *args]


# ---------------------------------------------------------------- the compose Ray cluster

CLUSTER_COMPOSE = ROOT / "docker" / "docker-compose.ray.yml"  # a Ray head and workers (the file says why each setting)
CLUSTER_PROJECT = "roadrisk-cluster"  # compose's project name: its containers and network carry it
CLUSTER_WORKERS = 2  # CLUSTER_WORKERS=N: worker-1 and N-1 copies of worker-2 (`up --scale`), 1 CPU each
CLUSTER_SPEC = "sweeps/smoke-cpu.toml"


def compose_cli() -> list[str]:
    """Compose v2 (`docker compose`) where the plugin answers, else v1 (`docker-compose`, Debian 12's)."""
    if subprocess.run([docker_cli(), "compose", "version"], capture_output=True).returncode == 0:
        return [docker_cli(), "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else []


def cluster_spec() -> Path:
    """The sweep the cluster runs: SPEC, default the smoke sweep; a file under sweeps/, the folder the head mounts."""
    spec = (ROOT / knob("SPEC", CLUSTER_SPEC)).resolve()
    if not spec.is_file() or not spec.is_relative_to(ROOT / "sweeps"):
        raise Problem(f"the cluster runs a sweep spec in sweeps/ (the only folder its head mounts), not {spec}: "
                      f"set SPEC=sweeps/<name>.toml, e.g. SPEC={CLUSTER_SPEC}")
    return spec


def sweep_name(spec: Path) -> str:
    """The spec's top-level name (the folder its runs go to), else the file's stem, as `roadrisk sweep` names it."""
    with spec.open("rb") as handle:
        return tomllib.load(handle).get("name") or spec.stem


def cluster_workers() -> int:
    """How many worker nodes: CLUSTER_WORKERS, default 2 (the compose file's two); 1 runs every fold on one node."""
    raw = knob("CLUSTER_WORKERS", str(CLUSTER_WORKERS))
    if not raw.isdigit() or int(raw) < 1:
        raise Problem(f"CLUSTER_WORKERS must be a whole number of workers, 1 or more, not {raw!r}: e.g. CLUSTER_WORKERS=1")
    return int(raw)


def cluster_env(workers: int) -> dict[str, str]:
    """What the compose file reads: the owner of what the driver writes, the folders, the base image, and how
    many nodes the head's health check waits for (the head and the workers)."""
    return {"HOST_UID": knob("HOST_UID", str(os.getuid())), "HOST_GID": knob("HOST_GID", str(os.getgid())),
            "RUNS_DIR": str(runs_dir()), "ROADRISK_CACHE_DIR": str(cache_dir()), "BASE_IMAGE": base_image(),
            "CLUSTER_NODES": str(1 + workers)}


def sweep_summary(sweep_json: Path, workers: int) -> tuple[str, str]:
    """Which nodes ran the folds, from the driver's sweep.json: the proof that the work was spread.
    (log line, warning or ""). Its status is checked too: `compose exec` can end with 0 when the driver in
    the head was cut off."""
    if not sweep_json.is_file():
        raise Problem(f"the sweep wrote no {sweep_json}: see the driver's output above")
    sweep = json.loads(sweep_json.read_text())
    if sweep.get("status") != "complete":
        raise Problem(f"the sweep ended {sweep.get('status')!r}, not complete ({sweep_json}): make run-cluster "
                      "again trains only what is missing")
    members = sweep["members"]
    folds_per_node: dict[str, int] = {}
    for fold in (fold for member in members for fold in member.get("folds", [])):
        node = fold.get("node_ip") or "(not recorded)"
        folds_per_node[node] = folds_per_node.get(node, 0) + 1
    spread = ", ".join(f"{node}: {count}" for node, count in sorted(folds_per_node.items()))
    line = f"{len(members)} members, their folds on {len(folds_per_node)} nodes ({spread}) -> {sweep_json.parent}"
    warning = ("every fold ran on one node: a sweep with fewer folds than workers cannot spread"
               if workers > 1 and len(folds_per_node) < 2 else "")
    return line, warning



def start_cluster(session, compose: list[str], env: dict, workers: int) -> dict:
    """`compose up` the head and `workers` workers; it returns once the head's health check sees every node
    (the `ready` service waits on it: docker/docker-compose.ray.yml). {"alive", "cpus", "seconds"}."""
    import time

    started = time.monotonic()
    # worker-2 is the one that scales: 0 copies for one worker, more for a bigger machine
    command = [*compose, "up", "--detach", "--no-build", "--scale", f"worker-2={workers - 1}"]
    session.log(shlex.join(command))
    up = subprocess.run(command, env={**os.environ, **env})
    if up.returncode != 0:
        session.run(*compose, "logs", "--no-color", "--tail", "15", env=env, external=True, success_codes=[0, 1])
        raise Problem(f"the Ray cluster did not come up: the head never saw {1 + workers} nodes alive (logs above). "
                      "Fix what they say, or free memory or CPU on this machine, then make run-cluster again "
                      "(it removes what is left)")
    seconds = time.monotonic() - started
    probe = subprocess.run([*compose, "exec", "-T", "head", "python", "/opt/roadrisk/cluster_ready.py", str(1 + workers)],
                           env={**os.environ, **env}, capture_output=True, text=True)
    lines = probe.stdout.strip().splitlines()
    alive = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {"alive": 0, "cpus": 0}
    return {**alive, "seconds": seconds}
