"""Successive halving within a time budget (Jamieson & Talwalkar 2016), for any trial function.

Every point is first trained with a small resource (WALS iterations, epochs); the best 1/eta of
each rung go on with eta times the resource, until one point is trained with the full resource.
The budget is checked before each trial: the one running when it runs out finishes, none starts
after it, and the winner is the best point of the highest rung that has a result. No Spark here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class Trial:
    number: int  # 1, 2, ... in the order the trials ran
    point: int  # index into the points
    rung: int  # 0 for the first, smallest resource
    resource: Optional[int]  # None: the kind has no resource key, the trial trained in full
    value: float
    seconds: float


@dataclass
class HalvingResult:
    best: int  # index into the points
    value: float  # its objective at the highest rung it reached
    trials: list = field(default_factory=list)  # Trial, in the order they ran
    stopped_by_budget: bool = False
    rungs: int = 0  # rungs planned


def rung_plan(n_points: int, max_resource: Optional[int], eta: int) -> list[tuple[int, Optional[int]]]:
    """[(points kept, resource)] per rung: n, n/eta, ... down to 1 point, the last at max_resource
    and each earlier rung eta times less (rounded up, at least 1). Without a resource: one rung."""
    if max_resource is None or n_points == 1:
        return [(n_points, max_resource)]
    rungs = int(math.floor(math.log(n_points, eta) + 1e-9))
    plan = []
    for i in range(rungs + 1):
        kept = max(1, n_points // eta ** i)
        plan.append((kept, max(1, math.ceil(max_resource / eta ** (rungs - i)))))
    plan[-1] = (1, max_resource)
    return plan


def successive_halving(points: list, run_trial: Callable[[object, Optional[int]], float], max_resource: Optional[int],
                       eta: int, budget_seconds: float, clock: Callable[[], float] = time.monotonic) -> HalvingResult:
    """Run `run_trial(point, resource) -> objective` (maximised) rung by rung; see the module doc.

    Within a rung the points run best-first by their previous rung (ties keep the earlier order,
    points first by index), so a budget that runs out mid-rung has tried the most promising ones.
    Deterministic given the objective values.
    """
    if not points:
        raise ValueError("successive halving needs at least one point")
    started = clock()
    plan = rung_plan(len(points), max_resource, eta)
    trials: list[Trial] = []
    alive = list(range(len(points)))
    best_rung: list[tuple[int, float]] = []  # (point, value) of the highest rung with a result, best first
    stopped = False
    for rung, (kept, resource) in enumerate(plan):
        results = []
        for index in alive[:kept] if rung else alive:
            if trials and clock() - started >= budget_seconds:  # the first trial always runs: a winner
                stopped = True
                break
            began = clock()
            value = float(run_trial(points[index], resource))
            if math.isnan(value):
                value = -math.inf
            trials.append(Trial(len(trials) + 1, index, rung, resource, value, round(clock() - began, 3)))
            results.append((index, value))
        if results:
            best_rung = sorted(results, key=lambda pair: -pair[1])  # stable: ties keep the earlier point first
            alive = [index for index, _ in best_rung]
        if stopped:
            break
    return HalvingResult(best_rung[0][0], best_rung[0][1], trials, stopped, len(plan))
