"""Chaos, crash-and-resume and shutdown helpers shared by the reliability tests and the benchmarks.

``run_chaos(seed, n_items)`` is the entry point: one seeded bulk run against the simulator under a
random schedule of faults, with its invariants checked (see :mod:`tests.chaos.harness`).
"""

from tests.chaos.harness import ChaosReport, ChaosSchedule, FaultSpec, draw_schedule, run_chaos

__all__ = ["ChaosReport", "ChaosSchedule", "FaultSpec", "draw_schedule", "run_chaos"]
