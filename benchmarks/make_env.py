"""The environment a benchmark gives the `make` targets it drives, as a user would type them.

What `make bench ARGS=...` exported would otherwise leak into the inner `make run-docker` or `make
run-cluster`: ARGS would reach the inner `roadrisk train`/`sweep`, and MAKEFLAGS carries the outer
make's command-line variables. Each inner run gets only the knobs it is given.
"""

from __future__ import annotations

import os

SCRUBBED = ("ARGS", "SPEC", "CLUSTER_WORKERS", "RUNS_DIR", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PROFILE", "MODEL",
            "RECIPE", "DEVICE")


def clean_env(**knobs: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in SCRUBBED}
    env.update({key: str(value) for key, value in knobs.items()})
    return env
