#!/usr/bin/env python3
"""Access logging's cost in one local ALB, finely interleaved (issue 24).

One local ALB (release build) in front of the monolith, under one continuous
saturating load (`wrk -t2 -c32`). Its `access_logs.s3.enabled` attribute is
switched through the ELBv2 API every WINDOW seconds in the pattern off, on,
off again (rotating which comes first). Each window's CPU time is read in
nanoseconds from /proc/PID/task/*/schedstat and divided by the requests the
ALB's /metrics counted in it. The cost is "on" over the first "off" of each
triple; the control, the second "off" over the first, shows the noise of the
measurement itself. Switching every second cancels the host's slow drift,
which moved 2 s runs by about ±5 % (docs/benchmarks.md, closing note).
The same split per thread name shows where the cost lands: the data-plane
workers (`alb-worker`, which render the lines) and the runtime's threads
(`tokio-rt-worker`, where the writer compresses and writes them).

Usage: python3 scripts/bench-lib/logging_cost.py [--triples 20] [--window 1.0]
                                                 [--path /api/threads/2] [--alb BINARY]
                                                 [-- LOCAL_ALB_ARGS...]
       (after `cargo build --release -p local-alb -p monolith`; e.g. `-- --access-log-compression 0`)
Exit codes: 0 measured, 1 a server did not start or an API call failed.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import (  # noqa: E402
    RELEASE,
    ROOT,
    BenchError,
    Fleet,
    access_log_switch,
    free_port,
    thread_cpu_nanoseconds,
    wait_ready,
)

RUNS = ("off", "on", "off again")


def requests_served(control: str) -> float:
    """The local ALB's requests so far, from its /metrics."""
    with urllib.request.urlopen(control + "/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return sum(float(m.group(1)) for m in re.finditer(r"^ficus_alb_requests_total\{[^}]*\} (\S+)$", text, re.M))


def quartiles(values: list[float]) -> str:
    low, median, high = statistics.quantiles(values, n=4)
    return f"median {median * 100:+.1f} % (interquartile {low * 100:+.1f} to {high * 100:+.1f} %)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triples", type=int, default=20, help="off/on/off triples (default 20)")
    parser.add_argument("--window", type=float, default=1.0, help="seconds each state is measured (default 1)")
    parser.add_argument("--path", default="/api/threads/2", help="the path wrk requests through the ALB")
    parser.add_argument(
        "--alb", type=Path, default=RELEASE / "local-alb", help="the local-alb binary (default: the release build)"
    )
    parser.add_argument("alb_args", nargs="*", help="more local-alb options, after --")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ficus-logging-cost-"))
    fleet = Fleet(work)
    try:
        port = free_port()
        monolith = fleet.start("monolith", [str(RELEASE / "monolith"), "--host", "127.0.0.1", "--port", str(port)])
        wait_ready(fleet, monolith, f"http://127.0.0.1:{port}/")
        stack = (ROOT / "infrastructure/local/stack.toml").read_text()
        for index in range(4):
            stack = stack.replace(f"127.0.0.1:{3000 + index}", f"127.0.0.1:{port}")
        stack = stack.replace(
            'name = "ficus-local"\n', 'name = "ficus-local"\nattributes = { "access_logs.s3.bucket" = "bench" }\n', 1
        )
        (work / "stack.toml").write_text(stack)
        data_port, control_port = free_port(), free_port()
        alb = fleet.start(
            "local-alb",
            [
                str(args.alb),
                *("--stack", str(work / "stack.toml"), "--state-dir", str(work / "state"), "--reset"),
                *("--listen", f"127.0.0.1:{data_port}", "--control-listen", f"127.0.0.1:{control_port}"),
                *("--access-log-root", str(work / "logs"), *args.alb_args),
            ],
            env={"RUST_LOG": "warn"},
        )
        base, control = f"http://127.0.0.1:{data_port}", f"http://127.0.0.1:{control_port}"
        wait_ready(fleet, alb, base + "/")
        logging = access_log_switch(control)

        seconds = int(args.triples * len(RUNS) * (args.window + 0.3)) + 5
        load = fleet.start("wrk", ["wrk", "-t2", "-c32", f"-d{seconds}s", base + args.path])
        time.sleep(1)
        load_at_start = os.getloadavg()[0]
        per_request: dict[str, list[float]] = {run: [] for run in RUNS}
        # Microseconds a request per thread name, per run.
        per_thread: dict[str, dict[str, list[float]]] = {run: {} for run in RUNS}
        for triple in range(args.triples):
            shift = triple % len(RUNS)
            for run in RUNS[shift:] + RUNS[:shift]:
                logging(run == "on")
                time.sleep(0.2)
                cpu, served = thread_cpu_nanoseconds(alb.pid), requests_served(control)
                time.sleep(args.window)
                after, served = thread_cpu_nanoseconds(alb.pid), requests_served(control) - served
                served = max(served, 1)
                per_request[run].append(sum(after.values()) - sum(cpu.values()))
                per_request[run][-1] /= served * 1000
                for name, nanoseconds in after.items():
                    spent = (nanoseconds - cpu.get(name, 0)) / served / 1000
                    per_thread[run].setdefault(name, []).append(spent)
        fleet.stop(load)
        cost = [on / off - 1 for on, off in zip(per_request["on"], per_request["off"])]
        control_ratios = [again / off - 1 for again, off in zip(per_request["off again"], per_request["off"])]
        print(
            f"{args.alb} on {args.path}, {args.triples} triples of {args.window:g} s windows under wrk -t2 -c32"
            + (f" (local-alb {' '.join(args.alb_args)})" if args.alb_args else "")
            + f"; load average {load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
        )
        print(f"  CPU per request with logging off: {statistics.median(per_request['off']):.2f} µs (median)")
        print(f"  logging's cost: {quartiles(cost)}")
        print(f"  control (off again over off): {quartiles(control_ratios)}")
        for name in sorted(per_thread["off"]):
            off, on = per_thread["off"][name], per_thread["on"].get(name, [])
            if len(on) == len(off):
                added = statistics.median(b - a for a, b in zip(off, on))
                print(f"  {name} threads: {statistics.median(off):.3f} µs a request off, {added:+.3f} µs with logging on")
        return 0
    except (BenchError, OSError) as error:
        print(f"logging_cost: {error}", file=sys.stderr)
        return 1
    finally:
        fleet.stop_all()


if __name__ == "__main__":
    sys.exit(main())
