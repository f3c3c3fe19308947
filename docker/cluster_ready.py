"""The Ray head's health check: healthy once the cluster has NODES nodes alive (the head and its workers).

    python cluster_ready.py NODES

Prints {"alive": ..., "cpus": ...} (nodes alive, CPUs for tasks) and exits 0 when alive >= NODES, else 1.
docker/docker-compose.ray.yml mounts this file into the head and runs it as the head's healthcheck; compose
starts the `ready` service only once the head is healthy, so `up` returns when every node has joined.
"""

from __future__ import annotations

import json
import sys

import ray


def main(argv: list[str]) -> int:
    wanted = int(argv[1]) if len(argv) > 1 else 1
    ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    alive = sum(bool(node["Alive"]) for node in ray.nodes())
    print(json.dumps({"alive": alive, "cpus": ray.cluster_resources().get("CPU", 0)}))
    return 0 if alive >= wanted else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
