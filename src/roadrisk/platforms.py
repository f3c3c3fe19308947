"""Which torch each machine gets: the one platform table, and what installing a row takes.

Everything that installs torch asks this file, so the host venv and the images cannot disagree:
noxfile.py (scripts/noxsupport.py) loads it by path before any venv exists, docker/Dockerfile copies it into the build and runs
it as a script (``install-torch``), and ``make check-platforms`` resolves every row for every Python
against the registry. roadrisk imports it to say, in ``doctor`` and ``run.json``, when a platform
forced an older torch than the project's. Standard library only, Python 3.10+.

Why the rows differ (docs/platforms.md has the measurements):
- PyPI's newest torch for Intel Macs is 2.2.2, built against NumPy 1.x, with no Python 3.13 wheel.
- torch 2.12 and later publish macOS wheels for macOS 14+ only; 2.11.0 is the newest for 12.3-13.
- PyPI's Linux wheels, x86_64 and aarch64 alike, are CUDA builds that pull the nvidia-* wheels
  (about 5 GB installed); the CPU build (``+cpu``) comes from PyTorch's CPU index or a wheelhouse.
- xgboost has the same split: PyPI's Linux ``xgboost`` wheel is the CUDA build and pulls
  ``nvidia-nccl-cu12`` (about 300 MB); ``xgboost-cpu`` has Linux wheels only, so Linux CPU rows take it
  and the CUDA rows and the Macs take ``xgboost``. Both install the module ``xgboost``: a venv must get
  exactly one, so neither is in pyproject.toml and each row names its own (``Row.xgboost``).
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass

PROJECT_TORCH = "2.13.0"
PYTHONS = ("3.10", "3.11", "3.12", "3.13")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
DOCS = "docs/platforms.md"


class Unsupported(Exception):
    """A machine the table does not cover; the message is one line: what was seen and what to do."""


@dataclass(frozen=True)
class Row:
    key: str
    machine: str                 # what a reader calls it
    system: str                  # platform.system()
    arch: str                    # x86_64 | arm64 (macOS) | aarch64 (Linux)
    variant: str                 # TORCH=cpu|cuda on Linux; "" on macOS (one wheel: CPU + MPS)
    torch: str
    accelerator: str
    why: str                     # why this torch, said once for the log, doctor and docs
    target: str                  # uv's --python-platform for the resolution check
    build: str = ""              # the local version: "+cpu" for PyTorch's CPU build
    macos_from: tuple[int, ...] = ()    # inclusive
    macos_before: tuple[int, ...] = ()  # exclusive
    pythons: tuple[str, ...] = PYTHONS
    # Pins that replace the lock's (requirements/constraints.txt) for the same packages on this row:
    # a pin only some platforms can satisfy lives here, not in the lock.
    companions: tuple[str, ...] = ()
    xgboost: str = "xgboost"     # the distribution of the module xgboost: "xgboost-cpu" on Linux CPU rows

    @property
    def requirement(self) -> str:
        return f"torch=={self.torch}{self.build}"

    @property
    def packages(self) -> tuple[str, ...]:
        """What this row installs besides torch and pyproject.toml's list (pinned by the lock)."""
        return (self.xgboost,)

    @property
    def older(self) -> bool:
        return self.torch != PROJECT_TORCH

    @property
    def from_cpu_index(self) -> bool:
        return self.build == "+cpu"


ROWS = (
    Row(key="macos-arm64", machine="Mac, Apple silicon, macOS 14+", system="Darwin", arch="arm64", variant="",
        torch=PROJECT_TORCH, accelerator="MPS", why="PyPI's macOS arm64 wheel, built with MPS",
        target="aarch64-apple-darwin", macos_from=(14, 0)),
    Row(key="macos-arm64-13", machine="Mac, Apple silicon, macOS 12.3–13", system="Darwin", arch="arm64", variant="",
        torch="2.11.0", accelerator="MPS",
        why="torch 2.12 and later publish macOS wheels for macOS 14+ only; 2.11.0 is the newest for macOS 12.3-13",
        target="aarch64-apple-darwin", macos_from=(12, 3), macos_before=(14, 0)),
    Row(key="macos-x86_64", machine="Intel Mac", system="Darwin", arch="x86_64", variant="",
        torch="2.2.2", accelerator="CPU (MPS only with an AMD GPU)",
        why="PyPI's last torch for Intel Macs is 2.2.2: built against NumPy 1.x (so numpy 1.26 and pandas 2.3), "
            "no Python 3.13 wheel",
        # macOS 11+: catboost publishes macOS wheels for 11 and later only (macosx_11_0_universal2)
        target="x86_64-apple-darwin", macos_from=(11, 0), pythons=("3.10", "3.11", "3.12"),
        companions=("numpy==1.26.4", "pandas==2.3.3")),
    Row(key="linux-x86_64-cpu", machine="Linux x86_64, CPU", system="Linux", arch="x86_64", variant="cpu",
        torch=PROJECT_TORCH, build="+cpu", accelerator="CPU",
        why="PyTorch's CPU build: PyPI's Linux wheel is the CUDA one (about 5 GB with its nvidia-* wheels)",
        target="x86_64-manylinux_2_28", xgboost="xgboost-cpu"),
    Row(key="linux-x86_64-cuda", machine="Linux x86_64, NVIDIA GPU", system="Linux", arch="x86_64", variant="cuda",
        torch=PROJECT_TORCH, accelerator="CUDA",
        why="PyPI's Linux wheel, the CUDA build (its nvidia-* wheels carry the CUDA runtime)",
        target="x86_64-manylinux_2_28"),
    Row(key="linux-aarch64-cpu", machine="Linux arm64, CPU", system="Linux", arch="aarch64", variant="cpu",
        torch=PROJECT_TORCH, build="+cpu", accelerator="CPU",
        why="PyTorch's CPU build: PyPI's aarch64 wheel is a CUDA build too (it requires the nvidia-* wheels)",
        target="aarch64-manylinux_2_28", xgboost="xgboost-cpu"),
    Row(key="linux-aarch64-cuda", machine="Linux arm64, NVIDIA GPU", system="Linux", arch="aarch64", variant="cuda",
        torch=PROJECT_TORCH, accelerator="CUDA", why="PyPI's aarch64 wheel, the CUDA build",
        target="aarch64-manylinux_2_28"),
)

# What a resolver cannot know: pairs it happily installs that fail at import. The check asserts them
# on every resolved row, so a row that loses its companion fails in CI, not on a user's Mac.
KNOWN_COMPANIONS = (
    # (torch older than, package, must be older than, why)
    ("2.3", "numpy", "2", "torch 2.2 and older were compiled against NumPy 1.x and cannot run with NumPy 2"),
)


# ---------------------------------------------------------------- choosing a row

_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "arm64": "arm64", "aarch64": "arm64"}


def select(system: str, machine: str, macos_version: str = "", translated: bool = False, variant: str = "") -> Row:
    """The row for a machine, or Unsupported with one line saying what was seen and what to do."""
    arch = _ARCH.get(machine.lower(), machine)
    if system == "Darwin":
        return _select_macos(arch, macos_version, translated, variant)
    if system == "Linux":
        return _select_linux(machine, "aarch64" if arch == "arm64" else arch, variant)
    if system == "Windows":
        raise Unsupported("Windows is not supported: use WSL2 (a Linux x86_64 machine to this project) "
                          f"or Docker Desktop; see {DOCS}")
    raise Unsupported(f"{system or 'this OS'} is not supported: roadrisk installs on macOS and Linux; see {DOCS}")


def _select_macos(arch: str, version: str, translated: bool, variant: str) -> Row:
    if translated:
        raise Unsupported("this is an x86_64 Python under Rosetta on Apple silicon: it would get the Intel Macs' "
                          "torch 2.2.2 and never MPS; install an arm64 Python (python.org's installer or Homebrew "
                          "in /opt/homebrew), then rm -rf .tools .nox and retry")
    if variant == "cuda":
        raise Unsupported("TORCH=cuda on macOS: Macs have no CUDA; unset TORCH (a Mac gets PyPI's wheel, "
                          "with MPS on Apple silicon)")
    if variant not in ("", "cpu"):
        raise Unsupported(f"TORCH={variant}: use TORCH=cpu or TORCH=cuda (or leave it unset)")
    seen = version_tuple(version)
    rows = [row for row in ROWS if row.system == "Darwin" and row.arch == arch]
    if not rows:
        raise Unsupported(f"a Mac with a {arch} CPU is not supported: roadrisk installs on Apple silicon "
                          f"(arm64) and Intel (x86_64) Macs; see {DOCS}")
    for row in rows:
        if not seen:  # mac_ver() said nothing: assume a current macOS
            if not row.macos_before:
                return row
        elif seen >= row.macos_from and (not row.macos_before or seen < row.macos_before):
            return row
    oldest = ".".join(map(str, min(row.macos_from for row in rows)))
    why = "MPS needs it" if arch == "arm64" else "the oldest the dependency set is checked on"
    raise Unsupported(f"macOS {version} on {'Apple silicon' if arch == 'arm64' else 'an Intel Mac'} is not "
                      f"supported: roadrisk needs macOS {oldest} or later ({why}); update macOS, see {DOCS}")


def _select_linux(machine: str, arch: str, variant: str) -> Row:
    variant = variant or "cpu"
    if variant not in ("cpu", "cuda"):
        raise Unsupported(f"TORCH={variant}: use TORCH=cpu (the default) or TORCH=cuda")
    for row in ROWS:
        if row.system == "Linux" and row.arch == arch and row.variant == variant:
            return row
    raise Unsupported(f"Linux on {machine} is not supported: PyTorch publishes Linux wheels for x86_64 and "
                      f"aarch64 only; see {DOCS}")


def check_python(row: Row, version: str) -> None:
    """Unsupported unless this row's torch and the lock have wheels for Python ``version``."""
    short = ".".join(version.split(".")[:2])
    if short not in PYTHONS:
        raise Unsupported(f"Python {version} is not supported: roadrisk is checked on Python {PYTHONS[0]} to "
                          f"{PYTHONS[-1]}; rm -rf .tools .nox and retry with e.g. make PYTHON=python3.12")
    if short not in row.pythons:
        raise Unsupported(f"Python {version} cannot install torch {row.torch} ({row.machine}): its wheels cover "
                          f"Python {row.pythons[0]} to {row.pythons[-1]}; rm -rf .tools .nox and retry with "
                          f"e.g. make PYTHON=python{row.pythons[-1]}")


def rosetta() -> bool:
    """True when this is an x86_64 Python translated by Rosetta on Apple silicon."""
    if sys.platform != "darwin":
        return False
    try:
        out = subprocess.run(["sysctl", "-n", "sysctl.proc_translated"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() == "1"
    except (OSError, subprocess.SubprocessError):
        return False


def this_machine(variant: str = "") -> Row:
    """The row for the machine this Python runs on (``variant``: the TORCH knob)."""
    return select(platform.system(), platform.machine(), platform.mac_ver()[0], rosetta(), variant)


# ---------------------------------------------------------------- installing a row

def python_tag(version: str | None = None) -> str:
    major, minor = (version or platform.python_version()).split(".")[:2]
    return f"cp{major}{minor}"


def wheelhouses(environ: dict) -> list[str]:
    """Folders of wheels pip is told about: WHEELHOUSE, then pip's own PIP_FIND_LINKS."""
    return [d for d in [environ.get("WHEELHOUSE", ""), *environ.get("PIP_FIND_LINKS", "").split()] if d]


def wheel_in(folder: str, row: Row, tag: str) -> str | None:
    """The row's torch wheel for Python ``tag`` in ``folder``, if it is there."""
    arch = "aarch64" if row.arch in ("arm64", "aarch64") else row.arch
    found = sorted(glob.glob(os.path.join(folder, f"torch-{row.torch}{row.build}-{tag}-*_{arch}.whl")))
    return found[0] if found else None


def torch_pip_args(row: Row, tag: str, folders: list[str], index_url: str) -> tuple[list[str], str]:
    """pip arguments that install the row's torch, and where it comes from, in words.

    A wheelhouse that holds the wheel is used alone: pip on an offline machine retries an unreachable
    index for every package it looks up (about 90 s of an image build), so no index is added then.
    """
    if not row.from_cpu_index:
        return [row.requirement], f"{row.requirement} from PyPI ({row.why})"
    held = next((folder for folder in folders if wheel_in(folder, row, tag)), None)
    if held:
        return [row.requirement], f"{row.requirement} from the wheelhouse {held}"
    if index_url and index_url != "none":
        return [row.requirement, "--extra-index-url", index_url], f"{row.requirement} from {index_url}"
    return [row.requirement], f"{row.requirement} from pip's configured indexes (TORCH_INDEX_URL=none)"


def _name(line: str) -> str | None:
    """The normalised project name a requirement line pins (PEP 503), or None for comments."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else None


def constraints_for(row: Row, lock_text: str) -> str:
    """The lock (requirements/constraints.txt) with the row's companions in place of the pins they name."""
    replaced = {_name(companion) for companion in row.companions}
    lines = [line for line in lock_text.splitlines() if _name(line) not in replaced]
    if row.companions:
        lines += [f"# {row.machine}: {row.why}", *row.companions]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- checking a row (make check-platforms)

def resolved_pins(compiled: str) -> dict[str, str]:
    """``name==version`` lines of a resolver's output as {normalised name: version}."""
    pins = {}
    for line in compiled.splitlines():
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip())
        if match:
            pins[_name(match.group(1))] = match.group(2)
    return pins


def companion_violations(pins: dict[str, str]) -> list[str]:
    """Known pairs that install but cannot import, found in a resolved set."""
    torch = pins.get("torch")
    problems = []
    for torch_below, package, below, why in KNOWN_COMPANIONS:
        version = pins.get(package)
        if torch and version and version_tuple(torch) < version_tuple(torch_below) \
                and version_tuple(version) >= version_tuple(below):
            problems.append(f"torch {torch} with {package} {version}: {why}")
    return problems


def version_tuple(text: str) -> tuple[int, ...]:
    """'12.3.1' -> (12, 3, 1); a local tag (+cpu) and anything after the first non-number are dropped."""
    parts = []
    for piece in text.split("+")[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


# ---------------------------------------------------------------- what doctor and run.json say

def torch_note(system: str, machine: str, macos_version: str, translated: bool, installed: str | None) -> str:
    """One line: whether this platform forced an older torch than the project's, and why."""
    variant = ("cpu" if installed is None or installed.endswith("+cpu") else "cuda") if system == "Linux" else ""
    try:
        row = select(system, machine, macos_version, translated, variant)
    except Unsupported as error:
        return f"not a platform of the table: {error}"
    if installed is None:
        return f"torch not installed; this platform gets {row.requirement} ({row.machine})"
    base = installed.split("+")[0]
    if base == row.torch and row.older:
        return f"torch {base}, older than the project's {PROJECT_TORCH}: {row.why}"
    if base == row.torch:
        return f"torch {base}, the project's default ({row.machine})"
    return f"torch {installed} was installed by hand: the table gives this platform ({row.machine}) {row.requirement}"


def markdown_table() -> str:
    """The table as docs/platforms.md shows it (a test keeps the two equal)."""
    lines = ["| machine | TORCH | torch | from | accelerator | Python | comes with | xgboost |",
             "|---|---|---|---|---|---|---|---|"]
    for row in ROWS:
        source = "PyTorch's CPU index or a wheelhouse" if row.from_cpu_index else "PyPI"
        torch = f"`{row.requirement}`" + (f" (older than {PROJECT_TORCH})" if row.older else "")
        lines.append(f"| {row.machine} | {row.variant or '—'} | {torch} | {source} | {row.accelerator} | "
                     f"{row.pythons[0]}–{row.pythons[-1]} | {', '.join(row.companions) or '—'} | `{row.xgboost}` |")
    return "\n".join(lines)


# ---------------------------------------------------------------- the script docker/Dockerfile runs

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="platforms.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser("install-torch", help="run PIP_COMMAND with this machine's torch appended")
    install.add_argument("--wheelhouse", action="append", default=[], help="a folder of wheels (repeatable)")
    install.add_argument("--index-url", default=CPU_INDEX, help="where the CPU build comes from; none for none")
    install.add_argument("pip_command", nargs="+", help="after --: the pip install command to run")
    constraints = sub.add_parser("constraints", help="print the lock with this machine's companions")
    constraints.add_argument("--lock", required=True, help="requirements/constraints.txt")
    packages = sub.add_parser("packages", help="print what this machine's row installs besides torch (xgboost's build)")
    sub.add_parser("table", help=f"print the table as {DOCS} shows it")
    for command in (install, constraints, packages):  # describe another machine (tests, "what would a Mac get?")
        command.add_argument("--variant", default="", help="TORCH: cpu or cuda (Linux)")
        command.add_argument("--system", default=platform.system())
        command.add_argument("--machine", default=platform.machine())
        command.add_argument("--macos", default=platform.mac_ver()[0])
        command.add_argument("--rosetta", action="store_true", default=rosetta())
        command.add_argument("--python", default=platform.python_version())
    args = parser.parse_args(argv)
    if args.command == "table":
        print(markdown_table())
        return 0
    try:
        row = select(args.system, args.machine, args.macos, args.rosetta, args.variant)
        check_python(row, args.python)
    except Unsupported as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.command == "constraints":
        with open(args.lock) as lock:
            sys.stdout.write(constraints_for(row, lock.read()))
        return 0
    if args.command == "packages":
        print("\n".join(row.packages))
        return 0
    torch_args, source = torch_pip_args(row, python_tag(args.python), args.wheelhouse, args.index_url)
    print(f"torch for {row.machine}: {source}", file=sys.stderr, flush=True)
    command = [*args.pip_command, *torch_args]
    os.execvp(command[0], command)
    return 1  # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main())
