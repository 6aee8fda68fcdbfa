"""A CPU-time sampling profiler for one process, for attributing join and media costs.

cProfile times every call on the wall clock and triples the cost of small functions, which
distorts a process made of many small callbacks (a swarm slows down until its bots time out).
This samples instead: ``ITIMER_PROF`` fires every ``--interval`` ms of the process's CPU time
(idle waits in epoll are never sampled) and the handler records the Python stack that was
running. At exit (or SIGTERM) it writes collapsed stacks (``frame;frame;frame count``, the
format of flame-graph tools) and prints the top functions, inclusive and exclusive.

    .venv/bin/python bench/cpu_sampler.py OUT.txt [--interval 5] -m bot run ...

SIGUSR1 starts a fresh sampling period and SIGUSR2 ends it (``bench/join_cost.py --sample``
sends them at the first join and the last published stream); without them the whole run is
sampled. Work done in other threads (the shared encoders') shows up under whatever the main
thread ran when it got the GIL back: read those figures with that in mind.
"""

from __future__ import annotations

import atexit
import collections
import os
import runpy
import signal
import sys
from types import FrameType

_stacks: collections.Counter[tuple[str, ...]] = collections.Counter()
_on = True


def _name(frame: FrameType) -> str:
    code = frame.f_code
    path = code.co_filename
    for marker in ("site-packages" + os.sep, "lib" + os.sep + "python3", os.sep + "bot" + os.sep):
        at = path.rfind(marker)
        if at >= 0:
            path = path[at + len(marker) :] if marker != os.sep + "bot" + os.sep else "bot/" + path[at + 5 :]
            break
    return f"{path}:{code.co_name}"


def _sample(_signum: int, frame: FrameType | None) -> None:
    if not _on:
        return
    stack = []
    while frame is not None:
        stack.append(_name(frame))
        frame = frame.f_back
    _stacks[tuple(reversed(stack))] += 1


def _report(out: str) -> None:
    signal.setitimer(signal.ITIMER_PROF, 0)
    total = sum(_stacks.values())
    with open(out, "w") as f:
        for stack, n in _stacks.most_common():
            f.write(";".join(stack) + f" {n}\n")
    inclusive: collections.Counter[str] = collections.Counter()
    exclusive: collections.Counter[str] = collections.Counter()
    for stack, n in _stacks.items():
        for name in set(stack):
            inclusive[name] += n
        exclusive[stack[-1]] += n
    lines = [f"{total} samples -> {out}", "exclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in exclusive.most_common(30)]
    lines += ["inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(60)]
    with open(out + ".top", "w") as f:
        f.write("\n".join(lines) + "\n")


def _start(_signum: int, _frame: object) -> None:
    global _on
    _stacks.clear()
    _on = True


def _stop(_signum: int, _frame: object) -> None:
    global _on
    _on = False


def main() -> None:
    args = sys.argv[1:]
    out = args.pop(0)
    interval = 0.002
    while args and args[0] != "-m":
        flag = args.pop(0)
        if flag == "--interval":
            interval = float(args.pop(0)) / 1000
        else:
            raise SystemExit(f"cpu_sampler: unknown flag {flag}")
    if len(args) < 2:
        raise SystemExit("usage: cpu_sampler.py OUT [--interval MS] -m MODULE ARGS...")
    module = args[1]
    sys.argv = [module, *args[2:]]
    sys.path[0] = os.getcwd()  # as `python -m` has it: the checkout we run in, not bench/
    atexit.register(_report, out)
    signal.signal(signal.SIGPROF, _sample)
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    signal.setitimer(signal.ITIMER_PROF, interval, interval)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
