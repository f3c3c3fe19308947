"""Print pyproject.toml's dependency lists as requirement lines, for the image build (docker/Dockerfile).

    python3 requirements.py PYPROJECT              the [project] dependencies, torch excepted (the platform
                                                   table installs it: src/roadrisk/platforms.py)
    python3 requirements.py PYPROJECT --extras a,b  the named [project.optional-dependencies]

pyproject.toml stays the one list: the image installs the dependencies in a layer of their own, before the
code, so that a code change does not reinstall them. Standard library only (the base image's Python 3.11+).
"""

from __future__ import annotations

import argparse
import sys

import tomllib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="requirements.py", description=__doc__.splitlines()[0])
    parser.add_argument("pyproject")
    parser.add_argument("--extras", help="comma-separated names of optional-dependency tables")
    args = parser.parse_args(argv)
    with open(args.pyproject, "rb") as handle:
        project = tomllib.load(handle)["project"]
    if args.extras is None:
        lines = [dep for dep in project["dependencies"] if not dep.startswith("torch")]
    else:
        table = project.get("optional-dependencies", {})
        names = [name for name in args.extras.split(",") if name]
        unknown = [name for name in names if name not in table]
        if unknown:
            print(f"error: EXTRAS={args.extras}: pyproject.toml has no extra {', '.join(unknown)}; "
                  f"it has {', '.join(sorted(table))}", file=sys.stderr)
            return 2
        lines = [dep for name in names for dep in table[name]]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
