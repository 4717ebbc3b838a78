"""How busy the machine was while bench.py measured: the load average and the CPU time other processes used.

Other work on the cores slows every measurement; the reports print these beside the figures so a reader can tell
a quiet run from a noisy one.

Usage:
    from benchmarks.machine_load import cpu_seconds, load_average, others_share
    start, clock = cpu_seconds(), time.perf_counter()
    ...  # measure (child processes waited for count as this process's)
    share = others_share(start, cpu_seconds(), time.perf_counter() - clock)   # 0.25: a quarter of the cores
"""

import os

import psutil


def load_average():
    """The 1, 5 and 15 minute load averages as text."""
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def cpu_seconds():
    """(CPU seconds every process of the machine has used, CPU seconds this process and its waited children have)."""
    machine = psutil.cpu_times()
    busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
    own = psutil.Process().cpu_times()
    return busy, own.user + own.system + own.children_user + own.children_system


def others_share(start, end, seconds):
    """Fraction of the cores that other processes used between two cpu_seconds() readings taken seconds apart."""
    others = (end[0] - start[0]) - (end[1] - start[1])
    return max(others, 0.0) / (seconds * len(os.sched_getaffinity(0)))
