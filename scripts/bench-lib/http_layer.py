#!/usr/bin/env python3
"""Builds of the forum servers against each other and nginx static, CPU per
request (issue 19): the A/B of a change to the servers' HTTP layer.

Starts each SERVER (a forum server binary, e.g. a copy of main's
`target/release/users` and this branch's, started with `--host 127.0.0.1
--port P` on the built-in seed data; every build must answer the same
bytes) and nginx answering the same bytes as a static response (as
`scripts/bench`'s services section does, access log on), then runs
`wrk -t2 -c32 -dSECONDS` on each path against each of them in turn, ROUNDS
times (every other round in reverse order). Per run it prints req/s and
the server's user and system CPU time per request (/proc/PID/stat over the
run, nginx's master and workers summed), then per server and path the
medians, and for each server after the first the median of its per-round
difference to the first (paired within a round, so the machine's drift
between rounds cancels out).

`scripts/bench --only services` judges the goal over every route and
server; this answers the narrower question of whether one build costs less
per request than another, on a machine whose load moves each figure by more
than the difference.

`--instructions` counts instead of timing: each server runs under
valgrind's callgrind, and per path its user-space instructions (every
thread, from callgrind's counters zeroed after a warm-up) over `wrk -t1 -c8
-d3s` are divided by the requests wrk completed. The count does not move
with the machine's load (a 0.1 µs change shows), but it leaves out the
kernel, where most of a request's CPU time goes.

Usage: python3 scripts/bench-lib/http_layer.py [--rounds 6] [--seconds 3]
           [--path /api/threads/2 --path /api/users/1] [--instructions]
           NAME=BINARY [NAME=BINARY...]
  e.g. main=/tmp/main-users branch=target/release/users
       'one-worker=WORKERS=1 target/release/users'   (VAR=VALUE: the server's environment)
Exit codes: 0 measured, 1 a server did not start or wrk failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import (  # noqa: E402
    BenchError,
    Fleet,
    Load,
    Suite,
    child_pids,
    free_port,
    get,
    user_system,
    wait_ready,
    wrk,
)

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--path", action="append", help="paths to request (default /api/threads/2, /api/users/1)")
    parser.add_argument("--nginx", default="/usr/sbin/nginx")
    parser.add_argument(
        "--instructions", action="store_true", help="count user-space instructions per request (callgrind)"
    )
    parser.add_argument("servers", nargs="+", metavar="NAME=BINARY")
    args = parser.parse_args()
    paths = args.path or ["/api/threads/2", "/api/users/1"]
    servers = []
    for spec in args.servers:
        name, _, command = spec.partition("=")
        env_and_binary = command.split()
        if not env_and_binary or not Path(env_and_binary[-1]).is_file():
            parser.error(f"{spec!r}: give NAME=BINARY (or NAME='VAR=VALUE BINARY') with an existing binary")
        env = dict(item.split("=", 1) for item in env_and_binary[:-1])
        servers.append((name, env_and_binary[-1], env))
    work = Path(tempfile.mkdtemp(prefix="ficus-http-layer-"))
    fleet = Fleet(work)
    load = Load(2, 32, args.seconds)
    if args.instructions:
        try:
            return instructions(servers, paths, fleet, work)
        except BenchError as error:
            print(f"http_layer: {error}", file=sys.stderr)
            return 1
        finally:
            fleet.stop_all()
    try:
        bases, pids = {}, {}
        for name, binary, env in servers:
            port = free_port()
            process = fleet.start(name, [binary, "--host", "127.0.0.1", "--port", str(port)], env)
            bases[name] = f"http://127.0.0.1:{port}"
            wait_ready(fleet, process, bases[name] + "/")
            pids[name] = [process.pid]
        bodies = {}
        # nginx is probed on `/` until it answers.
        for path in dict.fromkeys(["/", *paths]):
            status, headers, body = get(bases[servers[0][0]] + path)
            for name, *_ in servers[1:]:
                if get(bases[name] + path)[2] != body:
                    raise BenchError(f"{name} does not answer {path} with {servers[0][0]}'s bytes")
            bodies[path] = (headers.get("content-type", "application/octet-stream"), body)
        suite = Suite(argparse.Namespace(nginx=args.nginx, seconds=args.seconds, rounds=1), work)
        suite.fleet = fleet
        nginx, nginx_base = suite.nginx_static(bodies)
        wait_ready(fleet, nginx, nginx_base + "/")
        bases["nginx"] = nginx_base
        pids["nginx"] = [nginx.pid, *child_pids(nginx.pid)]
        names = [name for name, *_ in servers] + ["nginx"]
        print(f"wrk -t2 -c32 -d{args.seconds}s, {args.rounds} rounds; load at start {os.getloadavg()[0]:.1f}")
        runs: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        for path in paths:
            for round_number in range(args.rounds):
                order = names if round_number % 2 == 0 else names[::-1]
                line = []
                for name in order:
                    before = [sum(times) for times in zip(*map(user_system, pids[name]))]
                    result = wrk(bases[name] + path, load)
                    after = [sum(times) for times in zip(*map(user_system, pids[name]))]
                    per = 1e6 / max(result.requests, 1)
                    user, system = (after[0] - before[0]) * per, (after[1] - before[1]) * per
                    runs.setdefault((path, name), []).append((result.rps, user, system))
                    line.append(f"{name} {result.rps:7.0f}/s {user:4.2f}+{system:4.2f} µs")
                print(f"{path} round {round_number + 1}: " + " | ".join(line), flush=True)
        print(f"\nmedians (load at end {os.getloadavg()[0]:.1f}):")
        for path in paths:
            for name in names:
                rps, user, system = (statistics.median(values) for values in zip(*runs[(path, name)]))
                print(f"  {path:18} {name:8} {rps:8.0f} req/s  user {user:4.2f}  system {system:4.2f}  "
                      f"total {user + system:5.2f} µs/req")
            first = names[0]
            for name in names[1:]:
                pairs = list(zip(runs[(path, name)], runs[(path, first)]))
                paired = [(user + system) - (first_user + first_system) for (_, user, system), (_, first_user, first_system) in pairs]
                paired_user = [user - first_user for (_, user, _), (_, first_user, _) in pairs]
                print(f"  {path:18} {name:8} minus {first}: median {statistics.median(paired):+5.2f} µs/req, "
                      f"user {statistics.median(paired_user):+5.2f} (rounds {' '.join(f'{d:+.2f}' for d in paired)})")
        return 0
    except BenchError as error:
        print(f"http_layer: {error}", file=sys.stderr)
        return 1
    finally:
        fleet.stop_all()


def instructions(servers: list[tuple[str, str, dict[str, str]]], paths: list[str], fleet: Fleet, work: Path) -> int:
    """User-space instructions per request of each server on each path, under callgrind."""
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        raise BenchError("--instructions needs valgrind (Debian: apt-get install valgrind)")
    load = Load(1, 8, 3)
    counts: dict[tuple[str, str], float] = {}
    for name, binary, env in servers:
        port = free_port()
        out = work / f"{name}.callgrind"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary]
        process = fleet.start(name, [*argv, "--host", "127.0.0.1", "--port", str(port)], env)
        base = f"http://127.0.0.1:{port}"
        wait_ready(fleet, process, base + "/", timeout=120)
        for dump, path in enumerate(paths, start=1):
            wrk(base + path, Load(1, 8, 1))
            subprocess.run(["callgrind_control", "-z", str(process.pid)], capture_output=True, check=True)
            result = wrk(base + path, load)
            subprocess.run(["callgrind_control", "-d", str(process.pid)], capture_output=True, check=True)
            dumped = Path(f"{out}.{dump}")
            deadline = time.monotonic() + 30
            while "summary:" not in (text := dumped.read_text() if dumped.exists() else ""):
                if time.monotonic() > deadline:
                    raise BenchError(f"callgrind wrote no {dumped}")
                time.sleep(0.1)
            total = int(re.search(r"^summary: (\d+)", text, re.MULTILINE)[1])
            counts[(path, name)] = total / max(result.requests, 1)
            print(f"{path:18} {name:8} {counts[(path, name)]:8.0f} instructions/request "
                  f"({result.requests} requests)", flush=True)
        fleet.stop(process)
    first = servers[0][0]
    for path in paths:
        for name, *_ in servers[1:]:
            change = counts[(path, name)] / counts[(path, first)] - 1
            print(f"  {path:18} {name:8} vs {first}: {counts[(path, name)] - counts[(path, first)]:+6.0f} "
                  f"instructions/request ({change * 100:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
