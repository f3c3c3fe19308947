"""``--average-seeds``: members that differ only in their model seed become one member, their mean.

Averaging seeds is what practitioners do before blending: it removes the seed's noise at no fitting
cost, and it keeps a blend from spending its weights (or its level-2 model from spending its
capacity) on near-copies. Two runs are seeds of one member when their records agree on everything
that shapes the model — data, model, recipe, parameters, profile, folds, fold seed, device, features,
and anything a later version adds to ``config`` — and differ at most in the seed and in how the work
was scheduled (threads, workers, executor), which changes where the model was fitted, not what.
"""

from __future__ import annotations

import copy
import json

import numpy as np

from ..plan import SAME_RUN, key_values
from .members import EnsembleMember, Predictions

# The run plan's "same run" keys but the seed (plan.py): two runs equal on these are seeds of one model.
SAME_BUT_SEED = tuple(key for key in SAME_RUN if key != "seed")


def seedless_identity(record: dict) -> str:
    """Everything that makes two runs the same model but for their seed, as one comparable string."""
    return json.dumps(key_values(record, SAME_BUT_SEED), sort_keys=True, default=str)


def seed_groups(members: list[EnsembleMember]) -> list[list[EnsembleMember]]:
    """The members grouped by seedless identity, each group and the groups in the members' order."""
    groups: dict[str, list[EnsembleMember]] = {}
    for member in members:
        groups.setdefault(seedless_identity(member.record), []).append(member)
    return list(groups.values())


def _mean(predictions: list[Predictions]) -> Predictions:
    ids = predictions[0].ids
    return Predictions(ids, np.mean([p.aligned_to(ids) for p in predictions], axis=0))


def averaged_member(group: list[EnsembleMember]) -> EnsembleMember:
    """One member standing for the group: its predictions the mean of theirs, its record the first's with
    the seeds listed, its run id the first's with ``-avgN``, its training time the sum of theirs."""
    first = group[0]
    if len(group) == 1:
        return first
    record = copy.deepcopy(first.record)
    record["run_id"] = f"{first.run_id}-avg{len(group)}"
    record.setdefault("config", {})["seed"] = [m.field("config", "seed") for m in group]
    seconds = [m.field("timings", "total_s") for m in group]
    if all(isinstance(s, (int, float)) for s in seconds):
        record.setdefault("timings", {})["total_s"] = float(sum(seconds))
    else:  # unknown stays unknown rather than undercounted
        record.setdefault("timings", {})["total_s"] = None
    return EnsembleMember(first.path, record, _mean([m.oof for m in group]), _mean([m.submission for m in group]))


def average_seeds(members: list[EnsembleMember]) -> tuple[list[EnsembleMember], list[dict]]:
    """The members with each seed group replaced by its average, in a stable order (by run id), and one
    record entry per averaged group: which runs went into it."""
    averaged, entries = [], []
    for group in seed_groups(sorted(members, key=EnsembleMember.sort_key)):
        member = averaged_member(group)
        averaged.append(member)
        if len(group) > 1:
            entries.append({"run_id": member.run_id, "model": group[0].field("config", "model"),
                            "seeds": [m.field("config", "seed") for m in group],
                            "runs": [{"run_id": m.run_id, "path": str(m.path), "seed": m.field("config", "seed")}
                                     for m in group]})
    return sorted(averaged, key=EnsembleMember.sort_key), entries

