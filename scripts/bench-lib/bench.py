#!/usr/bin/env python3
"""The ficus benchmark suite behind `scripts/bench` (issue 9).

Starts the release binaries on free loopback ports, measures five sections and
writes docs/benchmarks.md: every figure beside the same-run reference it is
judged against (nginx, the direct backend, the smallest dataset), with the goal
and whether it is met.

  services  every route of the monolith and of each service vs nginx serving
            the same bytes as a static response (wrk)
  scale     gen-data datasets of 10k/100k/1M rows each; random by-id, in-thread
            and by-user lookups per size; list endpoints at the largest size
            (MiB/s, peak RSS); startup time
  alb       wrk -> monolith directly, through the local ALB, through nginx with
            the same path routing; the local ALB again with 100 rules and
            with CloudWatch counting off (--metric-retention 0), for its cost
  migrate   `migrate shift users` (direct cutover) and `migrate rollback users`
            on the local stack: wall time and ELBv2 calls from `-v`; status
  verify    compared pairs per second of the parity checker (its bench example)

`--profile` then runs each missed goal's case again under `perf record`
(once per case, however many goals it missed) and adds where the time went
to the document; with every goal met, it profiles the figure closest to
missing. A ratio's goal also shows the range of its per-round ratios, so a
miss from the machine's noise reads differently from a miss of the code.

Every goal prints PASS or MISS at the end, with the run's wall time.

Exit codes: 0 done (goals met or not: the document says which), 1 a server did
not start or a measurement failed, 2 bad usage, 3 a goal was missed and
`--check` was given.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "target" / "release"
LIB = Path(__file__).resolve().parent
SECTIONS = ("services", "scale", "alb", "migrate", "verify")
SERVICES = ("monolith", "users", "threads", "posts")

# (path, the extracted service that owns it; None: every service serves it)
ROUTES = (
    ("/", None),
    ("/api", None),
    ("/api/users", "users"),
    ("/api/users/1", "users"),
    ("/api/threads", "threads"),
    ("/api/threads/2", "threads"),
    ("/api/posts", "posts"),
    ("/api/posts/in-thread/1", "posts"),
    ("/api/posts/by-user/1", "posts"),
)
# Scale lookups: (name, path prefix, which table the random id ranges over)
LOOKUPS = (
    ("by-id", "/api/users/", "users"),
    ("in-thread", "/api/posts/in-thread/", "threads"),
    ("by-user", "/api/posts/by-user/", "users"),
)
LISTS = ("/api/users", "/api/threads", "/api/posts")
# Calls that change what the listener does with traffic.
ROUTING_CALLS = {"SetRulePriorities", "ModifyRule", "CreateRule", "DeleteRule", "ModifyListener"}

SERVICES_GOAL = 0.9
FLAT_GOAL = 1.5
# The monolith at a million posts (100k users, 100k threads): half the original's 262 MiB.
MILLION_POSTS = 1_000_000
MILLION_POSTS_RSS_GOAL_MIB = 131.0
MILLION_POSTS_STARTUP_GOAL_S = 2.0
ALB_ADDED_P99_GOAL_MS = 1.0
# CloudWatch counting may cost the data plane at most 3 % of its req/s (issue 15),
# measured as CPU time per request.
ALB_COUNTING_COST_GOAL = 0.03
# Access logs (issue #24): at most 3 % more CPU per request than the same local ALB without them.
ALB_ACCESS_LOG_COST_GOAL = 0.03
# Access logs' cost is measured on one local ALB whose logging is switched off and on between
# runs (its `access_logs.s3.enabled` attribute, through the ELBv2 API): each round runs off, on
# and off again, 2 s each, in a rotating order; the second "off" is the control that shows the
# measurement's own noise.
ALB_LOG_ROUNDS = 12
ALB_LOG_SECONDS = 2
# The stack file's control-API credentials (infrastructure/local/stack.toml: well-known local
# defaults, not secrets).
LOCAL_ACCESS_KEY = ("AKIAFICUSLOCAL000000", "ficus-local-secret-access-key")
# The local ALB at or above nginx proxying the same routes, at every load the section runs.
ALB_VS_NGINX_GOAL = 1.0
# The many-connections case (HTTP/1.1), and nginx's upstream pool: at least that many.
MANY_CONNECTIONS = 1000
NGINX_UPSTREAM_KEEPALIVE = 1024
# nginx static logs every request when it stands in for the forum servers, which log every
# request in batches (forum/src/request_log.rs): a per-worker buffer written when full or
# after a second.
NGINX_ACCESS_LOG_BUFFER = "64k"
MIGRATE_WALL_GOAL_MS = 300.0
# ELBv2 calls of a direct cutover and of a rollback (exactly 1 of them changing routing).
MIGRATE_CALLS_GOAL = {"shift": 10, "rollback": 9}
VERIFY_GOAL = 5000.0
# `migrate verify --from-alb-log` over an hour of a busy ALB: streamed, in bounded memory.
VERIFY_LOG_RSS_GOAL_MIB = 100.0


class BenchError(Exception):
    """A measurement could not be made; the message says which and why."""


def log(text: str = "") -> None:
    print(text, flush=True)


# ---------------------------------------------------------------- processes


class Fleet:
    """Every process the suite starts, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, work: Path):
        self.work = work
        self.running: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(self.work / f"{name}.log", "ab") as log_file:
            process = subprocess.Popen(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
            )
        process.name = name  # type: ignore[attr-defined]
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process in self.running:
            self.running.remove(process)

    def stop_all(self) -> None:
        for process in list(reversed(self.running)):
            self.stop(process)

    def log_tail(self, name: str) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 2.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (names in lower case: the forum servers send them so) and body."""
    request = urllib.request.Request(url)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, lower_case(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, lower_case(error.headers), error.read()


def lower_case(headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def wait_ready(fleet: Fleet, process: subprocess.Popen, url: str, timeout: float = 60.0) -> float:
    """Seconds from now until `url` answers 200; fails if the process exits first."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise BenchError(
                f"{process.name} exited with {process.returncode} before answering {url}; "
                f"its log:\n{fleet.log_tail(process.name)}"
            )
        try:
            if get(url, timeout=1.0)[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.005)
    raise BenchError(
        f"{process.name} did not answer {url} within {timeout:.0f} s; its log:\n{fleet.log_tail(process.name)}"
    )


def start_server(
    fleet: Fleet, binary: str, data: Path | None = None, name: str | None = None
) -> tuple[subprocess.Popen, str, float]:
    """Starts a forum binary; returns the process, its base URL and its startup seconds."""
    port = free_port()
    argv = [str(RELEASE / binary), "--host", "127.0.0.1", "--port", str(port)]
    if data:
        argv += ["--data", str(data)]
    spawned = time.monotonic()
    process = fleet.start(name or binary, argv)
    base = f"http://127.0.0.1:{port}"
    wait_ready(fleet, process, base + "/")
    return process, base, time.monotonic() - spawned


def memory_kib(process: subprocess.Popen) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a running process in KiB."""
    fields = {}
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


# ---------------------------------------------------------------- wrk


@dataclass
class Load:
    threads: int
    connections: int
    seconds: int

    def describe(self) -> str:
        return f"wrk -t{self.threads} -c{self.connections} -d{self.seconds}s --latency"


@dataclass
class WrkResult:
    rps: float
    p50: float  # ms
    p99: float  # ms
    bytes_per_second: float
    requests: int
    errors: str
    # Lowest and highest req/s over the rounds of `interleaved`.
    spread: tuple[float, float] | None = None
    # req/s of each round of `interleaved`, in order.
    round_rps: tuple[float, ...] = ()

    def mib_per_second(self) -> float:
        return self.bytes_per_second / (1 << 20)


UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}


def to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise BenchError(f"unexpected wrk latency {text!r}")
    value, unit = float(match[1]), match[2]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url: str, load: Load, script_args: list[str] | None = None, timeout_s: int = 2) -> WrkResult:
    argv = [
        "wrk",
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{load.seconds}s",
        "--latency",
        f"--timeout={timeout_s}s",
    ]
    if script_args is not None:
        argv += ["-s", str(LIB / "random-id.lua"), url, "--", *script_args]
    else:
        argv.append(url)
    run = subprocess.run(argv, capture_output=True, check=False, text=True)
    out = run.stdout
    if run.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed ({run.returncode}):\n{out}{run.stderr}")
    try:
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
        p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)[1])
        p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)[1])
        transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
        requests = int(re.search(r"(\d+) requests in", out)[1])
    except (TypeError, KeyError) as error:
        raise BenchError(f"cannot read wrk's output ({error}):\n{out}") from error
    errors = "; ".join(line.strip() for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line)
    return WrkResult(rps, p50, p99, float(transfer[1]) * UNITS[transfer[2]], requests, errors)


def interleaved(
    cases: list[tuple[str, str]], load: Load, rounds: int, script_args: dict[str, list[str]] | None = None
) -> dict[str, WrkResult]:
    """Runs every (name, url) case once per round, in turn (every other round in reverse
    order), so slow and fast moments of a shared machine hit every case alike; each case's
    figures are its medians over the rounds.
    `script_args` gives a case random-id.lua's arguments."""
    runs: dict[str, list[WrkResult]] = {name: [] for name, _ in cases}
    for round_number in range(rounds):
        # Every other round in reverse order, so no case always follows the same one.
        for name, url in cases if round_number % 2 == 0 else cases[::-1]:
            runs[name].append(wrk(url, load, (script_args or {}).get(name)))
    return {
        name: WrkResult(
            rps=statistics.median(r.rps for r in results),
            p50=statistics.median(r.p50 for r in results),
            p99=statistics.median(r.p99 for r in results),
            bytes_per_second=statistics.median(r.bytes_per_second for r in results),
            requests=sum(r.requests for r in results),
            errors="; ".join(r.errors for r in results if r.errors),
            spread=(min(r.rps for r in results), max(r.rps for r in results)),
            round_rps=tuple(r.rps for r in results),
        )
        for name, results in runs.items()
    }


H2LOAD_CLIENTS, H2LOAD_STREAMS = 32, 10


def h2load_describe(seconds: int) -> str:
    return f"h2load -c{H2LOAD_CLIENTS} -m{H2LOAD_STREAMS} -t2 -D {seconds}"


def h2load(url: str, seconds: int) -> WrkResult:
    """h2load (Debian's nghttp2-client) over h2c with prior knowledge; latencies are not read
    (its per-request figures are not percentiles)."""
    argv = ["h2load", f"-c{H2LOAD_CLIENTS}", f"-m{H2LOAD_STREAMS}", "-t2", "-D", str(seconds), url]
    run = subprocess.run(argv, capture_output=True, check=False, text=True)
    out = run.stdout
    finished = re.search(r"finished in ([\d.]+)(\w+), ([\d.]+) req/s", out)
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    if run.returncode != 0 or not finished or not counts:
        raise BenchError(f"{' '.join(argv)} failed ({run.returncode}):\n{out}{run.stderr}")
    failed = int(counts[5])
    return WrkResult(
        float(finished[3]), 0.0, 0.0, 0.0, int(counts[4]), f"{failed} requests failed" if failed else ""
    )


def user_system(pid: int) -> tuple[float, float]:
    """User and system CPU seconds a process has used so far (from /proc/PID/stat, in clock
    ticks: 10 ms resolution). The one reader of a process's CPU time; `thread_cpu_nanoseconds`
    gives its threads' in nanoseconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (from /proc)."""
    return sum(user_system(pid))


def thread_cpu_nanoseconds(pid: int) -> dict[str, int]:
    """CPU time of the threads of `pid` so far, in nanoseconds (/proc/PID/task/*/schedstat's
    first field), by thread name with its number dropped (`alb-worker`, `tokio-rt-worker`)."""
    total: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = re.sub(r"-?\d+$", "", (task / "comm").read_text().strip())
            total[name] = total.get(name, 0) + int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total


def elbv2_call(control: str, params: dict[str, str]) -> str:
    """One ELBv2 Query API call to a local ALB's control listener, signed with AWS Signature
    Version 4 (the local ALB checks signatures as AWS does); returns the XML answer."""
    import hashlib
    import hmac

    body = urllib.parse.urlencode({**params, "Version": "2015-12-01"}).encode()
    host = control.removeprefix("http://")
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    region, service = "us-east-1", "elasticloadbalancing"
    headers = {
        "content-type": "application/x-www-form-urlencoded; charset=utf-8",
        "host": host,
        "x-amz-date": stamp,
    }
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            "".join(f"{name}:{headers[name]}\n" for name in sorted(headers)),
            signed,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + LOCAL_ACCESS_KEY[1]).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={LOCAL_ACCESS_KEY[0]}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    request = urllib.request.Request(control + "/", data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read().decode()


def access_log_switch(control: str) -> Callable[[bool], None]:
    """A function that turns a local ALB's access logs on or off (its load balancer's
    `access_logs.s3.enabled` attribute, through the ELBv2 API)."""
    arn = re.search(r"<LoadBalancerArn>([^<]+)<", elbv2_call(control, {"Action": "DescribeLoadBalancers"}))
    if arn is None:
        raise BenchError("the local ALB's DescribeLoadBalancers named no load balancer")

    def switch(on: bool) -> None:
        elbv2_call(
            control,
            {
                "Action": "ModifyLoadBalancerAttributes",
                "LoadBalancerArn": arn.group(1),
                "Attributes.member.1.Key": "access_logs.s3.enabled",
                "Attributes.member.1.Value": "true" if on else "false",
            },
        )

    return switch


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (nginx's workers), from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            children.append(int(entry.name))
    return children


def paired_ratio(a: WrkResult, b: WrkResult) -> float:
    """The median over the rounds of a's req/s over b's in the same round: on a machine
    whose speed drifts, each round compares two runs made seconds apart."""
    if a.round_rps and len(a.round_rps) == len(b.round_rps):
        return statistics.median(x / y for x, y in zip(a.round_rps, b.round_rps))
    return a.rps / b.rps


def paired_range(a: WrkResult, b: WrkResult) -> str:
    """The lowest and highest of the per-round ratios behind [`paired_ratio`], as
    "; rounds 0.93–1.08" (empty without rounds): how far the machine moved the figure."""
    if a.round_rps and len(a.round_rps) == len(b.round_rps) and len(a.round_rps) > 1:
        ratios = [x / y for x, y in zip(a.round_rps, b.round_rps)]
        return f"; rounds {min(ratios):.2f}–{max(ratios):.2f}"
    return ""


def show(label: str, result: WrkResult, extra: str = "") -> None:
    warn = f"  !! {result.errors}" if result.errors else ""
    spread = f" ({result.spread[0]:.0f}–{result.spread[1]:.0f})" if result.spread else ""
    log(
        f"  {label:<44} {result.rps:>9.0f} req/s{spread}  p50 {result.p50:7.3f} ms  p99 {result.p99:7.3f} ms"
        f"{extra}{warn}"
    )


# ---------------------------------------------------------------- report


@dataclass
class Goal:
    section: str
    what: str
    goal: str
    measured: str
    met: bool
    # How far from the goal: measured/goal for "at least", goal/measured for "at most" (<1: missed).
    score: float
    profile: Callable[[], str] | None = None
    # Goals whose profile runs the same case share it: it runs once.
    profile_key: str = ""


@dataclass
class Report:
    settings: dict[str, str]
    sections: dict[str, list[str]] = field(default_factory=dict)
    goals: list[Goal] = field(default_factory=list)
    profile: list[str] = field(default_factory=list)

    def table(self, section: str, header: list[str], rows: list[list[str]], note: str = "") -> None:
        lines = self.sections.setdefault(section, [])
        if note:
            lines += [note, ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")

    def text(self, section: str, text: str) -> None:
        self.sections.setdefault(section, []).extend([text, ""])

    def goal(self, goal: Goal) -> None:
        self.goals.append(goal)
        log(f"  goal: {goal.what}: {goal.measured} (goal {goal.goal}) -> {'met' if goal.met else 'NOT MET'}")


# Symbols of the access log's work: the line's formatting, gzip and its checksum.
LOGGING_SYMBOLS = re.compile(r"accesslog|zlib_rs|crc32|deflate|adler")


def profile_reading(by_binary: list[str], by_symbol: list[str]) -> list[str]:
    """A profile in one sentence: where its samples went (the kernel, the
    server's own code, libc) and, when present, the access log's share."""

    def share(line: str) -> tuple[float, str]:
        percent, _, rest = line.strip().partition("%")
        try:
            return float(percent), rest.strip()
        except ValueError:
            return 0.0, ""

    binaries = [share(line) for line in by_binary]
    kernel = sum(p for p, name in binaries if "kernel" in name)
    libraries = sum(p for p, name in binaries if name.startswith(("lib", "[vdso]", "ld-")))
    own = [(p, name) for p, name in binaries if p and "kernel" not in name and not name.startswith(("lib", "[vdso]", "ld-"))]
    logging = sum(p for p, name in map(share, by_symbol) if LOGGING_SYMBOLS.search(name))
    if not binaries:
        return []
    sentence = (
        f"Reading: {kernel:.0f} % of the samples are in the kernel (TCP send and receive, "
        f"wake-ups and task switches), {sum(p for p, _ in own):.0f} % in "
        f"{', '.join(f'`{name}`' for _, name in own) or 'the server'} itself and "
        f"{libraries:.0f} % in libc and the vDSO."
    )
    if logging >= 0.05:
        sentence += f" The access log's work (formatting, gzip, its checksum) is {logging:.1f} % of the samples."
    return [sentence]


def within_spread(goal: "Goal") -> str:
    """For a missed ratio goal whose rounds straddle it: says so."""
    rounds = re.search(r"rounds ([\d.]+)–([\d.]+)", goal.measured)
    threshold = re.fullmatch(r"≥ ([\d.]+)", goal.goal)
    if goal.met or not rounds or not threshold:
        return ""
    low, high, wanted = float(rounds[1]), float(rounds[2]), float(threshold[1])
    if not low <= wanted <= high:
        return ""
    return (
        f"{goal.what}: the rounds' ratios ({low:.2f}–{high:.2f}) include the goal ({wanted:.2f}); "
        "the miss is within this run's round-to-round spread, not a cost the profile singles out."
    )


def met(flag: bool) -> str:
    return "met" if flag else "**not met**"


def fmt_ms(value: float) -> str:
    return f"{value:.3f}"


# ---------------------------------------------------------------- sections


class Suite:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args = args
        self.work = work
        self.fleet = Fleet(work)
        self.load = Load(2, 32, args.seconds)
        self.rounds = args.rounds
        self.profile_load = Load(2, 32, 8)
        self.cores = os.cpu_count() or 1
        self.report = Report(settings={})

    # --- services ------------------------------------------------------------

    def nginx_static(self, bodies: dict[str, tuple[str, bytes]]) -> tuple[subprocess.Popen, str]:
        """nginx answering each path with its exact bytes and content type (`return 200`),
        logging each request to a file as the forum servers do (buffered, as theirs is)."""
        port = free_port()
        locations = []
        for path, (content_type, body) in bodies.items():
            text = body.decode()
            for char, escaped in (("\\", "\\\\"), ("'", "\\'"), ("$", "${dollar}")):
                text = text.replace(char, escaped)
            locations.append(f"location = {path} {{ default_type \"{content_type}\"; return 200 '{text}'; }}")
        config = self.nginx_config(
            port,
            "\n        ".join(locations),
            upstreams='geo $dollar { default "$"; }',
            access_log=f"{self.work}/nginx-static-access.log combined buffer={NGINX_ACCESS_LOG_BUFFER} flush=1s",
        )
        return self.start_nginx("nginx-static", config), f"http://127.0.0.1:{port}"

    def nginx_config(
        self, port: int, locations: str, upstreams: str, extra: str = "", access_log: str = "off"
    ) -> str:
        return f"""worker_processes {self.cores};
pid {self.work}/nginx-{port}.pid;
error_log {self.work}/nginx-{port}-error.log warn;
daemon off;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
    access_log {access_log};
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    {extra}
    {upstreams}
    server {{
        listen 127.0.0.1:{port};
        {locations}
    }}
}}
"""

    def start_nginx(self, name: str, config: str) -> subprocess.Popen:
        path = self.work / f"{name}.conf"
        path.write_text(config)
        return self.fleet.start(name, [self.args.nginx, "-c", str(path), "-p", str(self.work)])

    def start_services(self) -> dict[str, str]:
        """The monolith and the three services on the built-in seed data; name -> base URL."""
        if not hasattr(self, "bases"):
            started = {name: start_server(self.fleet, name) for name in SERVICES}
            self.bases = {name: base for name, (_, base, _) in started.items()}
            self.service_pids = {name: process.pid for name, (process, _, _) in started.items()}
        return self.bases

    def services(self) -> None:
        log(f"\n== services: {self.load.describe()} against each server, nginx static as the ceiling")
        bases = self.start_services()
        bodies = {}
        for path, _ in ROUTES:
            status, headers, body = get(bases["monolith"] + path)
            if status != 200:
                raise BenchError(f"the monolith answered {status} to {path}")
            bodies[path] = (headers.get("content-type", "application/octet-stream"), body)
        nginx, nginx_base = self.nginx_static(bodies)
        wait_ready(self.fleet, nginx, nginx_base + "/")
        for path, (content_type, body) in bodies.items():
            status, headers, static = get(nginx_base + path)
            if status != 200 or static != body or headers.get("content-type") != content_type:
                raise BenchError(f"nginx does not serve the monolith's bytes and type on {path} ({status})")
        # CPU time per request: the master and its workers for nginx. Beside req/s, which
        # depends on how the two cores are shared with wrk, it compares the servers' own cost.
        nginx_pids = [nginx.pid, *child_pids(nginx.pid)]
        rows, worst = [], None
        for path, owner in ROUTES:
            servers = SERVICES if owner is None else ("monolith", owner)
            pids = {"nginx": nginx_pids} | {server: [self.service_pids[server]] for server in servers}
            cpu_before = {name: sum(map(cpu_seconds, group)) for name, group in pids.items()}
            results = interleaved(
                [("nginx", nginx_base + path)] + [(server, bases[server] + path) for server in servers],
                self.load,
                self.args.services_rounds,
            )
            cpu_us = {
                name: (sum(map(cpu_seconds, group)) - cpu_before[name]) / max(results[name].requests, 1) * 1e6
                for name, group in pids.items()
            }
            ceiling = results["nginx"]
            show(f"nginx static {path}", ceiling, f"  CPU {cpu_us['nginx']:.2f} µs/req")
            rows.append(
                [
                    f"`{path}`",
                    "nginx (static)",
                    str(len(bodies[path][1])),
                    f"{ceiling.rps:.0f}",
                    fmt_ms(ceiling.p50),
                    fmt_ms(ceiling.p99),
                    f"{cpu_us['nginx']:.2f}",
                    "1.00",
                    "1.00",
                    "—",
                ]
            )
            for server in servers:
                result = results[server]
                ratio = paired_ratio(result, ceiling)
                cpu_ratio = cpu_us[server] / max(cpu_us["nginx"], 1e-9)
                show(
                    f"{server} {path}",
                    result,
                    f"  {ratio:.2f} of nginx  CPU {cpu_us[server]:.2f} µs/req ({cpu_ratio:.2f}× nginx's)",
                )
                rows.append(
                    [
                        f"`{path}`",
                        server,
                        str(len(bodies[path][1])),
                        f"{result.rps:.0f}",
                        fmt_ms(result.p50),
                        fmt_ms(result.p99),
                        f"{cpu_us[server]:.2f}",
                        f"{cpu_ratio:.2f}",
                        f"{ratio:.2f}",
                        met(ratio >= SERVICES_GOAL),
                    ]
                )
                if worst is None or ratio < worst[0]:
                    worst = (ratio, server, path, cpu_ratio, paired_range(result, ceiling))
        self.fleet.stop(nginx)
        self.report.table(
            "services",
            [
                "route",
                "server",
                "body bytes",
                "req/s",
                "p50 ms",
                "p99 ms",
                "CPU µs/req",
                "CPU vs nginx",
                "req/s of nginx",
                f"goal ≥ {SERVICES_GOAL}",
            ],
            rows,
            note=f"`{self.load.describe()}` per case, {self.args.services_rounds} rounds taking turns (medians shown; "
            f"the ratio to nginx is the median of the ratios within each round), "
            f"keep-alive; each server on the built-in seed data "
            f"with its default {self.cores} workers and its request log on, to a file; nginx "
            f"({self.cores} workers, access log on, to a file, `buffer={NGINX_ACCESS_LOG_BUFFER} flush=1s`) answers with the monolith's exact bytes and "
            f"content type (`return 200 '<body>'`), taking turns with the servers on the same route. "
            f"CPU µs/req: the server's user+system CPU time (nginx: master and workers) over the route's "
            f"rounds divided by the requests wrk completed; CPU vs nginx is that over nginx's (lower is "
            f"cheaper). wrk shares the {self.cores} cores, so req/s follows how the cores are split, "
            f"while CPU per request is each server's own cost.",
        )
        ratio, server, path, cpu_ratio, spread = worst
        self.report.goal(
            Goal(
                "services",
                "services: lowest req/s vs nginx static on any route",
                f"≥ {SERVICES_GOAL} of nginx",
                f"{ratio:.2f} ({server} `{path}`; CPU per request {cpu_ratio:.2f}× nginx's{spread})",
                ratio >= SERVICES_GOAL,
                ratio / SERVICES_GOAL,
                profile=lambda: self.profile_server(server, path),
                profile_key=f"server {server} {path}",
            )
        )

    # --- scale --------------------------------------------------------------------

    def generate(self, rows: int, users: int | None = None, threads: int | None = None) -> tuple[Path, float]:
        """gen-data with `rows` posts and, unless given, as many users and threads."""
        users, threads = users or rows, threads or rows
        path = self.work / f"data-{users}-{threads}-{rows}.json"
        started = time.monotonic()
        subprocess.run(
            [
                str(RELEASE / "gen-data"),
                "--users",
                str(users),
                "--threads",
                str(threads),
                "--posts",
                str(rows),
                "--seed",
                "1",
                "--out",
                str(path),
            ],
            check=True,
        )
        return path, time.monotonic() - started

    def million_posts(self) -> None:
        """The monolith at 1M posts over 100k users and 100k threads (issue 19): RSS after
        startup, startup wall and CPU time, and that lookups answer."""
        data, _ = self.generate(MILLION_POSTS, users=MILLION_POSTS // 10, threads=MILLION_POSTS // 10)
        megabytes = data.stat().st_size / 1e6
        process, base, startup = start_server(self.fleet, "monolith", data, name="monolith-1m-posts")
        cpu = cpu_seconds(process.pid)
        rss, peak = memory_kib(process)
        for path in ("/api/users/100000", "/api/posts/in-thread/1", "/api/posts/by-user/7"):
            status, _, body = get(base + path, timeout=10)
            if status != 200 or not body.startswith((b"{", b"[")):
                raise BenchError(f"the monolith at 1M posts answered {status} to {path}")
        self.fleet.stop(process)
        data.unlink()
        rss_mib = rss / 1024
        log(
            f"  1M posts, 100k users and threads ({megabytes:.0f} MB): startup {startup * 1000:.0f} ms wall, "
            f"{cpu:.2f} s CPU, RSS {rss_mib:.0f} MiB (peak while loading {peak / 1024:.0f} MiB)"
        )
        self.report.table(
            "scale",
            ["data", "JSON MB", "startup ms (spawn → first 200)", "CPU s until ready", "RSS after start MiB", "peak RSS while loading MiB"],
            [
                [
                    "`gen-data --users 100000 --threads 100000 --posts 1000000 --seed 1`",
                    f"{megabytes:.0f}",
                    f"{startup * 1000:.0f}",
                    f"{cpu:.2f}",
                    f"{rss_mib:.0f}",
                    f"{peak / 1024:.0f}",
                ]
            ],
            note="The monolith at a million posts (issue 19; the original Node monolith: 262 MiB on the same file). "
            "CPU until ready is the process's user + system time when it first answers: on a shared machine "
            "the wall time includes waiting for a core, the CPU time does not.",
        )
        self.report.goal(
            Goal(
                "scale",
                "monolith at 1M posts: RSS after startup",
                f"≤ {MILLION_POSTS_RSS_GOAL_MIB:.0f} MiB",
                f"{rss_mib:.0f} MiB",
                rss_mib <= MILLION_POSTS_RSS_GOAL_MIB,
                MILLION_POSTS_RSS_GOAL_MIB / rss_mib,
            )
        )
        self.report.goal(
            Goal(
                "scale",
                "monolith at 1M posts: startup (spawn → first answer; CPU time in brackets)",
                f"≤ {MILLION_POSTS_STARTUP_GOAL_S:.0f} s",
                f"{startup:.2f} s ({cpu:.2f} s CPU)",
                startup <= MILLION_POSTS_STARTUP_GOAL_S,
                MILLION_POSTS_STARTUP_GOAL_S / startup,
            )
        )

    def scale(self) -> None:
        sizes = self.args.sizes
        # A light load: at saturation on 2 cores the median is the run queue's, not the lookup's.
        lookup_load = Load(1, 4, self.args.seconds)
        log(
            f"\n== scale: gen-data --users N --threads N --posts N for N in {sizes}; "
            f"{lookup_load.describe()}, random ids over the whole table"
        )
        latency: dict[tuple[str, int], WrkResult] = {}
        size_rows, list_rows = [], []
        servers = {}
        for rows in sizes:
            data, generated = self.generate(rows)
            megabytes = data.stat().st_size / 1e6
            process, base, startup = start_server(self.fleet, "monolith", data, name=f"monolith-{rows}")
            rss_started, peak_started = memory_kib(process)
            log(
                f"  {rows} rows each: {megabytes:.0f} MB of JSON (generated in {generated:.1f} s), "
                f"startup {startup * 1000:.0f} ms, RSS {rss_started / 1024:.0f} MiB "
                f"(peak while loading {peak_started / 1024:.0f} MiB)"
            )
            size_rows.append(
                [
                    f"{rows:,}",
                    f"{megabytes:.0f}",
                    f"{generated:.1f}",
                    f"{startup * 1000:.0f}",
                    f"{rss_started / 1024:.0f}",
                    f"{peak_started / 1024:.0f}",
                ]
            )
            servers[rows] = (process, base)
            data.unlink()
        # Every size's server stays up so that the sizes take turns, round after round.
        for name, prefix, _table in LOOKUPS:
            cases = [(str(rows), servers[rows][1] + "/") for rows in sizes]
            arguments = {str(rows): [prefix, str(rows)] for rows in sizes}
            results = interleaved(cases, lookup_load, self.rounds, arguments)
            for rows in sizes:
                latency[(name, rows)] = results[str(rows)]
                show(f"{name} {prefix}<1..{rows}>", results[str(rows)])
        for rows in sizes:
            process, base = servers[rows]
            if rows == sizes[-1]:
                slow = Load(1, 1, max(1, round(self.args.seconds * 2.5)))
                for path in LISTS:
                    result = wrk(base + path, slow, timeout_s=60)
                    _, peak = memory_kib(process)
                    size = (
                        len(get(base + path, timeout=60)[2])
                        if result.requests == 0
                        else result.bytes_per_second * slow.seconds / max(result.requests, 1)
                    )
                    log(
                        f"  list {path}: {result.mib_per_second():.0f} MiB/s, "
                        f"{result.requests / slow.seconds:.2f} responses/s of {size / 1e6:.0f} MB, "
                        f"p50 {result.p50:.0f} ms, peak RSS {peak / 1024:.0f} MiB"
                    )
                    list_rows.append(
                        [
                            f"`{path}`",
                            f"{size / 1e6:.1f}",
                            f"{result.mib_per_second():.0f}",
                            f"{result.requests / slow.seconds:.2f}",
                            f"{result.p50:.0f}",
                            f"{peak / 1024:.0f}",
                        ]
                    )
                self.list_load = slow
            self.fleet.stop(process)
        self.report.table(
            "scale",
            [
                "rows each (users, threads, posts)",
                "JSON MB",
                "gen-data s",
                "startup ms (spawn → first 200 on /)",
                "RSS after start MiB",
                "peak RSS while loading MiB",
            ],
            size_rows,
            note="`gen-data --users N --threads N --posts N --seed 1` (posts skewed towards "
            "low thread and user ids, density ∝ 1/√id, so a few threads and users "
            "carry most posts); the monolith serves it.",
        )
        header = (
            ["lookup"]
            + [f"{rows:,}: req/s, p50, p99 ms" for rows in sizes]
            + ["p50 largest/smallest", f"goal flat (≤ {FLAT_GOAL}×)"]
        )
        table = []
        smallest, largest = sizes[0], sizes[-1]
        for name, prefix, _ in LOOKUPS:
            cells = [
                f"{latency[(name, r)].rps:.0f}, {latency[(name, r)].p50:.3f}, {latency[(name, r)].p99:.3f}"
                for r in sizes
            ]
            growth = latency[(name, largest)].p50 / latency[(name, smallest)].p50
            table.append([f"{name} `{prefix}<random id>`"] + cells + [f"{growth:.2f}", met(growth <= FLAT_GOAL)])
            self.report.goal(
                Goal(
                    "scale",
                    f"scale: {name} p50 at {largest:,} vs {smallest:,} rows",
                    f"flat (≤ {FLAT_GOAL}×)",
                    f"{growth:.2f}×",
                    growth <= FLAT_GOAL,
                    FLAT_GOAL / growth,
                )
            )
        self.report.table(
            "scale",
            header,
            table,
            note=f"`{lookup_load.describe()} -s scripts/bench-lib/random-id.lua`: every request a "
            "uniformly random id in 1..N, so the mix of response sizes is the same at "
            "every size (N posts over N threads and N users); the sizes' servers run side by side and "
            f"take turns, {self.rounds} rounds, medians; a light load (4 connections), so the "
            "latency is the lookup's and not the run queue's of a saturated 2-core machine.",
        )
        self.report.table(
            "scale",
            ["list endpoint", "body MB", "MiB/s", "responses/s", "p50 ms", "peak RSS MiB (VmHWM since start)"],
            list_rows,
            note=f"At {largest:,} rows each: `{self.list_load.describe()} --timeout=60s`; "
            "peak RSS read from /proc/PID/status after each endpoint.",
        )
        self.million_posts()

    # --- local ALB ----------------------------------------------------------------

    def stack_file(self, name: str, bases: dict[str, str], extra_rules: int = 0, interval: int = 6) -> Path:
        """The repo's stack file, each target group's target on this run's port."""
        text = (ROOT / "infrastructure/local/stack.toml").read_text()
        for index, service in enumerate(SERVICES):
            text = text.replace(f"127.0.0.1:{3000 + index}", bases[service].removeprefix("http://"))
        text = text.replace(
            "interval_seconds = 6, timeout_seconds = 5",
            f"interval_seconds = {interval}, timeout_seconds = {min(5, interval - 1)}",
        )
        # Extra rules that share the monolith's /api prefix but never match: 98 in
        # front of the monolith's rule (priority 99), the rest behind it.
        priorities = [p for p in range(1, 200) if p != 99][:extra_rules]
        for priority in priorities:
            text += (
                f'\n[[rules]]\npriority = {priority}\nconditions = [{{ field = "path-pattern", '
                f'values = ["/api/unused-{priority}/*", "/api/*/unused-{priority}"] }}]\n'
                f'actions = [{{ forward = "users" }}]\n'
            )
        path = self.work / f"{name}.toml"
        path.write_text(text)
        return path

    def logged_stack_file(self, name: str, bases: dict[str, str]) -> Path:
        """[`stack_file`] with the load balancer's access logs on (its `access_logs.s3.*`
        attributes), delivered every 5 minutes."""
        path = self.stack_file(name, bases)
        path.write_text(
            path.read_text().replace(
                'name = "ficus-local"\n',
                'name = "ficus-local"\nattributes = { "access_logs.s3.enabled" = "true", "access_logs.s3.bucket" = "bench" }\n',
                1,
            )
        )
        return path

    def start_alb(
        self, name: str, stack: Path, binary: Path | None = None, extra: list[str] | None = None
    ) -> tuple[subprocess.Popen, str, str]:
        data_port, control_port = free_port(), free_port()
        process = self.fleet.start(
            name,
            [
                str(binary or RELEASE / "local-alb"),
                "--stack",
                str(stack),
                "--state-dir",
                str(self.work / f"{name}-state"),
                "--reset",
                "--listen",
                f"127.0.0.1:{data_port}",
                "--control-listen",
                f"127.0.0.1:{control_port}",
                *(extra or []),
            ],
            env={"RUST_LOG": "warn"},
        )
        data = f"http://127.0.0.1:{data_port}"
        wait_ready(self.fleet, process, data + "/")
        return process, data, f"http://127.0.0.1:{control_port}"

    def nginx_proxy(self, monolith: str) -> tuple[subprocess.Popen, str, str]:
        """nginx with the stack's routing: /api* and the default action both to the monolith.
        Configured fairly for every load the section runs: an upstream keep-alive pool larger than
        the most client connections (1,000), and request limits (client keep-alive, upstream
        keep-alive, HTTP/2 connections) that no run reaches. Returns the process, its HTTP/1.1 base
        URL and its h2c (prior knowledge) base URL."""
        port, h2c_port = free_port(), free_port()
        upstream = (
            f"upstream monolith {{ server {monolith.removeprefix('http://')}; "
            f"keepalive {NGINX_UPSTREAM_KEEPALIVE}; keepalive_requests 1000000; keepalive_timeout 600s; }}"
        )
        locations = """proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto http;
        proxy_set_header X-Forwarded-Port 80;
        location /api { proxy_pass http://monolith; }
        location / { proxy_pass http://monolith; }"""
        h2c_server = f"""server {{
        listen 127.0.0.1:{h2c_port} http2;
        {locations}
    }}"""
        config = self.nginx_config(port, locations, upstream + "\n    " + h2c_server)
        process = self.start_nginx("nginx-proxy", config)
        base = f"http://127.0.0.1:{port}"
        wait_ready(self.fleet, process, base + "/")
        return process, base, f"http://127.0.0.1:{h2c_port}"

    def alb(self) -> None:
        path = self.args.alb_path
        load = Load(2, 32, self.args.alb_seconds)
        light = Load(1, 4, self.args.seconds)
        log(
            f"\n== local ALB: {load.describe()} {path} (saturating) and {light.describe()} (light load): "
            "direct, local ALB, nginx proxy, local ALB with 100 rules, local ALB with CloudWatch counting off"
        )
        bases = self.start_services()
        alb, alb_base, _ = self.start_alb("local-alb", self.stack_file("stack", bases))
        uncounted = "local ALB, counting off"
        alb_off, alb_off_base, _ = self.start_alb(
            "local-alb-uncounted", self.stack_file("stack-uncounted", bases), extra=["--metric-retention", "0"]
        )
        alb100, alb100_base, _ = self.start_alb("local-alb-100", self.stack_file("stack-100", bases, extra_rules=99))
        # Access logs on (the load balancer's access_logs.s3.* attributes, in
        # the stack file), delivered every 5 minutes.
        logged = "local ALB, access logs on"
        logged_stack = self.logged_stack_file("stack-logged", bases)
        alb_logged, alb_logged_base, _ = self.start_alb(
            "local-alb-logged", logged_stack, extra=["--access-log-root", str(self.work / "access-logs")]
        )
        # The same with gzip of stored blocks (`--access-log-compression 0`;
        # the default is deflate level 1): no deflate, ten times the bytes.
        stored_logs = "local ALB, access logs on, stored gzip"
        alb_stored, alb_stored_base, _ = self.start_alb(
            "local-alb-logged-stored",
            logged_stack,
            extra=["--access-log-root", str(self.work / "access-logs-stored"), "--access-log-compression", "0"],
        )
        nginx, nginx_base, nginx_h2c = self.nginx_proxy(bases["monolith"])
        hundred = "local ALB, 100 rules"
        urls = {
            "direct": bases["monolith"],
            "local ALB": alb_base,
            "nginx proxy": nginx_base,
            hundred: alb100_base,
            uncounted: alb_off_base,
            logged: alb_logged_base,
            stored_logs: alb_stored_base,
        }
        baseline = None
        if self.args.alb_baseline:
            baseline, baseline_base, _ = self.start_alb(
                "local-alb-baseline", self.stack_file("stack-baseline", bases), Path(self.args.alb_baseline)
            )
            urls["local ALB (baseline build)"] = baseline_base
        saturated: dict[str, WrkResult] = {}
        relaxed: dict[str, WrkResult] = {}
        # CPU time per request of the local ALB with and without counting, over
        # the saturating runs: steadier than req/s on a shared machine.
        cpu_pids = {
            "local ALB": alb.pid,
            uncounted: alb_off.pid,
            logged: alb_logged.pid,
            stored_logs: alb_stored.pid,
        }
        if baseline is not None:
            cpu_pids["local ALB (baseline build)"] = baseline.pid
        cpu_before = {name: cpu_seconds(pid) for name, pid in cpu_pids.items()}
        for results, this_load in ((saturated, load), (relaxed, light)):
            results.update(
                interleaved([(name, url + path) for name, url in urls.items()], this_load, self.args.alb_rounds)
            )
            if results is saturated:
                cpu_per_request = {
                    name: (cpu_seconds(pid) - cpu_before[name]) / max(saturated[name].requests, 1) * 1e6
                    for name, pid in cpu_pids.items()
                }
            for name in urls:
                show(f"{name} ({this_load.connections} connections)", results[name])
        guards = self.alb_guards({"local ALB": alb_base, "nginx proxy": nginx_base}, nginx_h2c, path)
        toggled = self.access_log_cost(logged_stack, path)
        for process in (alb, alb100, alb_off, alb_logged, alb_stored, nginx, baseline):
            if process is not None:
                self.fleet.stop(process)
        for results, this_load, what in ((saturated, load, "saturating"), (relaxed, light, "light load")):
            direct, nginx_result = results["direct"], results["nginx proxy"]
            rows = []
            for name, result in results.items():
                added = "—" if name == "direct" else f"{result.p50 - direct.p50:+.3f} / {result.p99 - direct.p99:+.3f}"
                rows.append(
                    [
                        name,
                        f"{result.rps:.0f} ({result.spread[0]:.0f}–{result.spread[1]:.0f})",
                        fmt_ms(result.p50),
                        fmt_ms(result.p99),
                        added,
                        f"{paired_ratio(result, direct):.2f}",
                        f"{paired_ratio(result, nginx_result):.2f}",
                    ]
                )
            self.report.table(
                "alb",
                [
                    f"{what}: path through",
                    "req/s median (min–max)",
                    "p50 ms",
                    "p99 ms",
                    "added p50 / p99 ms",
                    "of direct",
                    "of nginx proxy",
                ],
                rows,
                note=f"`{this_load.describe()} {path}`, {self.args.alb_rounds} rounds taking turns; req/s, "
                "latencies and ratios are medians over the rounds (a ratio is taken within each round, "
                "between runs seconds apart):",
            )
        self.report.text(
            "alb",
            "The cases take turns (every other round in reverse order) against the same monolith (seed data). The local ALB runs the repo's "
            "stack file (`/api*` at priority 99 and the default action to the monolith); nginx proxies the "
            "same two paths to the same monolith over keep-alive upstream connections with the same "
            "X-Forwarded-* headers. The 100-rule run adds 99 non-matching path-pattern rules sharing the "
            "`/api/` prefix, 98 of them in front of priority 99, so every request is tested against 99 "
            "rules before it matches. The counting-off case is the same local ALB started with "
            "`--metric-retention 0`: no per-second CloudWatch counters (the default counts every request "
            "for `GetMetricData`); the pair measures what that counting costs. Throughput is judged at the saturating load; added latency at the "
            "light load, since at saturation on 2 cores p99 is the CPU run queue shared by wrk, the proxy "
            "and the monolith, not the proxy's own cost.",
        )
        ratio = paired_ratio(saturated["local ALB"], saturated["nginx proxy"])
        added_p99 = relaxed["local ALB"].p99 - relaxed["direct"].p99
        self.report.goal(
            Goal(
                "alb",
                "local ALB: req/s vs nginx proxy (saturating)",
                "≥ 1.00",
                f"{ratio:.2f} ({paired_range(saturated['local ALB'], saturated['nginx proxy']).removeprefix('; ')})",
                ratio >= 1.0,
                ratio,
                profile=lambda: self.profile_alb(),
                profile_key="alb",
            )
        )
        self.report.goal(
            Goal(
                "alb",
                "local ALB: added p99 over direct (light load)",
                f"≤ {ALB_ADDED_P99_GOAL_MS:.1f} ms",
                f"{added_p99:+.3f} ms",
                added_p99 <= ALB_ADDED_P99_GOAL_MS,
                ALB_ADDED_P99_GOAL_MS / max(added_p99, 0.001),
                profile=lambda: self.profile_alb(),
                profile_key="alb",
            )
        )
        counted = paired_ratio(saturated["local ALB"], saturated[uncounted])
        cpu_on, cpu_off = cpu_per_request["local ALB"], cpu_per_request[uncounted]
        self.report.text(
            "alb",
            f"CloudWatch counting: CPU time of the local ALB per request over the saturating runs "
            f"{cpu_on:.2f} µs with counting, {cpu_off:.2f} µs without ({(cpu_on / cpu_off - 1) * 100:+.1f} %); "
            f"req/s with counting over without, paired per round: {counted:.3f}.",
        )
        log(f"  CPU per request: counting {cpu_on:.2f} µs, counting off {cpu_off:.2f} µs")
        # Judged on CPU time per request: for a CPU-bound proxy that is its req/s cost, and
        # unlike req/s it does not swing by ±20 % with the load of a shared machine.
        cpu_cost = cpu_on / cpu_off - 1
        self.report.goal(
            Goal(
                "alb",
                "local ALB: CloudWatch counting's cost (CPU per request, saturating)",
                f"≤ {ALB_COUNTING_COST_GOAL * 100:.0f} %",
                f"{cpu_cost * 100:+.1f} % ({cpu_on:.2f} vs {cpu_off:.2f} µs; req/s paired ratio {counted:.3f})",
                cpu_cost <= ALB_COUNTING_COST_GOAL,
                ALB_COUNTING_COST_GOAL / max(cpu_cost, 0.001),
                profile=lambda: self.profile_alb(),
                profile_key="alb",
            )
        )
        logged_ratio = paired_ratio(saturated[logged], saturated["local ALB"])
        cpu_logged = cpu_per_request[logged]
        cpu_stored = cpu_per_request[stored_logs]
        self.report.text(
            "alb",
            f"Access logs, separate processes (the table's rows): CPU time of the local ALB per request over "
            f"the saturating runs {cpu_on:.2f} µs with logging off, {cpu_logged:.2f} µs on (deflate level 1, "
            f"the default; {(cpu_logged / cpu_on - 1) * 100:+.1f} %; req/s paired ratio {logged_ratio:.3f}), "
            f"{cpu_stored:.2f} µs on with `--access-log-compression 0` ({(cpu_stored / cpu_on - 1) * 100:+.1f} %; "
            f"req/s paired ratio {paired_ratio(saturated[stored_logs], saturated['local ALB']):.3f}). Three "
            "processes measured at different moments differ by more than logging costs (the counting pair "
            "above shows how much), so the goal is judged on one process below.",
        )
        cost, control = toggled["cost"], toggled["control"]
        self.report.text(
            "alb",
            f"Access logs, one process (judged): one local ALB whose `access_logs.s3.enabled` attribute is "
            f"switched through the ELBv2 API between runs; {ALB_LOG_ROUNDS} rounds of `wrk -t2 -c32 "
            f"-d{ALB_LOG_SECONDS}s {path}` with logging off, on, and off again (a rotating order); CPU time "
            f"per request, on over off within each round: median {cost['median'] * 100:+.1f} % "
            f"(rounds {cost['low'] * 100:+.1f} % to {cost['high'] * 100:+.1f} %; pooled {cost['pooled'] * 100:+.1f} %). "
            f"The control, the second \"off\" over the first: median {control['median'] * 100:+.1f} % "
            f"(rounds {control['low'] * 100:+.1f} % to {control['high'] * 100:+.1f} %): the noise of the "
            f"measurement itself. {toggled['files']} log file(s), {toggled['bytes'] / 1e6:.1f} MB of gzip "
            f"for {toggled['logged']:,} logged requests.",
        )
        log(
            f"  access logs, one process: cost median {cost['median'] * 100:+.1f} % "
            f"(control {control['median'] * 100:+.1f} %)"
        )
        self.report.goal(
            Goal(
                "alb",
                "local ALB: access logs' cost (CPU per request, one process switched off and on, saturating)",
                f"≤ {ALB_ACCESS_LOG_COST_GOAL * 100:.0f} %",
                f"{cost['median'] * 100:+.1f} % (control {control['median'] * 100:+.1f} %; "
                f"separate processes {(cpu_logged / cpu_on - 1) * 100:+.1f} %)",
                cost["median"] <= ALB_ACCESS_LOG_COST_GOAL,
                ALB_ACCESS_LOG_COST_GOAL / max(cost["median"], 0.001),
                profile=lambda: self.profile_alb(logged=True),
                profile_key="alb logged",
            )
        )
        many = paired_ratio(saturated[hundred], saturated["nginx proxy"])
        cost = paired_ratio(saturated[hundred], saturated["local ALB"])
        self.report.goal(
            Goal(
                "alb",
                "local ALB with 100 rules: req/s vs nginx proxy (saturating)",
                "≥ 1.00",
                f"{many:.2f} (100 rules vs 1: {cost:.2f}{paired_range(saturated[hundred], saturated['nginx proxy'])})",
                many >= 1.0,
                many,
                profile=lambda: self.profile_alb(extra_rules=99),
                profile_key="alb 100",
            )
        )
        added_p99 = relaxed[hundred].p99 - relaxed["direct"].p99
        self.report.goal(
            Goal(
                "alb",
                "local ALB with 100 rules: added p99 over direct (light load)",
                f"≤ {ALB_ADDED_P99_GOAL_MS:.1f} ms",
                f"{added_p99:+.3f} ms",
                added_p99 <= ALB_ADDED_P99_GOAL_MS,
                ALB_ADDED_P99_GOAL_MS / max(added_p99, 0.001),
                profile=lambda: self.profile_alb(extra_rules=99),
                profile_key="alb 100",
            )
        )
        self.report_alb_guards(guards, path)
        if baseline is not None:
            self.report_alb_baseline(saturated, "local ALB (baseline build)", cpu_per_request)

    def access_log_cost(self, stack: Path, path: str) -> dict:
        """Logging's cost in one local ALB process: its `access_logs.s3.enabled` attribute switched
        off and on through the ELBv2 API between saturating runs; each round runs off, on and off
        again (rotating which comes first); CPU time per request of each run. Returns the cost (on
        over the first off) and the control (second off over the first) per round."""
        load = Load(2, 32, ALB_LOG_SECONDS)
        log(f"  -- access logs' cost in one process: {ALB_LOG_ROUNDS} rounds of off, on, off ({load.describe()})")
        root = self.work / "access-logs-toggled"
        alb, base, control = self.start_alb("local-alb-toggled", stack, extra=["--access-log-root", str(root)])
        logging = access_log_switch(control)
        runs = ("off", "on", "off again")
        per_request: dict[str, list[float]] = {run: [] for run in runs}
        totals = {run: [0, 0.0] for run in runs}
        try:
            for round_number in range(ALB_LOG_ROUNDS):
                shift = round_number % len(runs)
                for run in runs[shift:] + runs[:shift]:
                    logging(run == "on")
                    before = cpu_seconds(alb.pid)
                    result = wrk(base + path, load)
                    used = cpu_seconds(alb.pid) - before
                    per_request[run].append(used / max(result.requests, 1))
                    totals[run][0] += result.requests
                    totals[run][1] += used
        finally:
            logging(False)
            self.fleet.stop(alb)

        def ratios(run: str) -> dict[str, float]:
            each = [x / y - 1 for x, y in zip(per_request[run], per_request["off"])]
            pooled = (totals[run][1] / totals[run][0]) / (totals["off"][1] / totals["off"][0]) - 1
            return {"median": statistics.median(each), "low": min(each), "high": max(each), "pooled": pooled}

        files = [f for f in root.rglob("*.log.gz")]
        return {
            "cost": ratios("on"),
            "control": ratios("off again"),
            "files": len(files),
            "bytes": sum(f.stat().st_size for f in files),
            "logged": totals["on"][0],
        }

    def alb_guards(self, http1: dict[str, str], nginx_h2c: str, path: str) -> dict[str, dict[str, WrkResult]]:
        """The local ALB against nginx at 1,000 HTTP/1.1 connections (wrk) and for h2c clients
        (h2load -c32 -m10), rounds taking turns."""
        many = Load(2, MANY_CONNECTIONS, self.args.alb_seconds)
        rounds = self.args.guard_rounds
        log(f"  -- {many.describe()} {path}, {rounds} rounds: local ALB vs nginx proxy")
        connections = interleaved([(name, url + path) for name, url in http1.items()], many, rounds)
        for name, result in connections.items():
            show(f"{name} ({MANY_CONNECTIONS} connections)", result)
        h2c_cases = [("local ALB", http1["local ALB"] + path), ("nginx proxy", nginx_h2c + path)]
        log(f"  -- {h2load_describe(self.args.alb_seconds)} {path}, {rounds} rounds: local ALB vs nginx proxy, h2c")
        h2c: dict[str, list[WrkResult]] = {name: [] for name, _ in h2c_cases}
        for round_number in range(rounds):
            for name, url in h2c_cases if round_number % 2 == 0 else h2c_cases[::-1]:
                h2c[name].append(h2load(url, self.args.alb_seconds))
        h2c_results = {
            name: WrkResult(
                rps=statistics.median(r.rps for r in results),
                p50=statistics.median(r.p50 for r in results),
                p99=statistics.median(r.p99 for r in results),
                bytes_per_second=0.0,
                requests=sum(r.requests for r in results),
                errors="; ".join(r.errors for r in results if r.errors),
                spread=(min(r.rps for r in results), max(r.rps for r in results)),
                round_rps=tuple(r.rps for r in results),
            )
            for name, results in h2c.items()
        }
        for name, result in h2c_results.items():
            show(f"{name} (h2c)", result)
        return {"connections": connections, "h2c": h2c_results}

    def report_alb_guards(self, guards: dict[str, dict[str, WrkResult]], path: str) -> None:
        rows = []
        for kind, describe in (
            ("connections", f"`wrk -t2 -c{MANY_CONNECTIONS} -d{self.args.alb_seconds}s --latency {path}`"),
            ("h2c", f"`{h2load_describe(self.args.alb_seconds)} {path}` (HTTP/2 over cleartext, prior knowledge)"),
        ):
            results = guards[kind]
            nginx_result = results["nginx proxy"]
            for name, result in results.items():
                rows.append(
                    [
                        describe,
                        name,
                        f"{result.rps:.0f} ({result.spread[0]:.0f}–{result.spread[1]:.0f})",
                        fmt_ms(result.p50) if result.p50 else "—",
                        fmt_ms(result.p99) if result.p99 else "—",
                        f"{paired_ratio(result, nginx_result):.2f}",
                    ]
                )
        self.report.table(
            "alb",
            ["load", "path through", "req/s median (min–max)", "p50 ms", "p99 ms", "of nginx proxy"],
            rows,
            note=f"Guards: the local ALB against nginx at {MANY_CONNECTIONS} connections and for h2c clients, "
            f"{self.args.guard_rounds} rounds taking turns. nginx is configured so that it never closes a "
            f"connection mid-run: `keepalive {NGINX_UPSTREAM_KEEPALIVE}` upstream connections (more than the "
            "client connections), `keepalive_requests 1000000` for clients and upstream (which on nginx "
            "1.19.7+ is also the HTTP/2 connection's request limit, formerly `http2_max_requests`), "
            f"{self.cores} workers with 8,192 connections each; its h2c listener (`listen … http2`) "
            "proxies the same routes the same way.",
        )
        for kind, what in (
            ("connections", f"local ALB: req/s vs nginx proxy at {MANY_CONNECTIONS:,} connections"),
            ("h2c", "local ALB: h2c req/s vs nginx proxy (h2load -c32 -m10)"),
        ):
            ratio = paired_ratio(guards[kind]["local ALB"], guards[kind]["nginx proxy"])
            spread = paired_range(guards[kind]["local ALB"], guards[kind]["nginx proxy"]).removeprefix("; ")
            self.report.goal(
                Goal(
                    "alb",
                    what,
                    f"≥ {ALB_VS_NGINX_GOAL:.2f}",
                    f"{ratio:.2f} ({spread})" if spread else f"{ratio:.2f}",
                    ratio >= ALB_VS_NGINX_GOAL,
                    ratio / ALB_VS_NGINX_GOAL,
                    profile=lambda: self.profile_alb(),
                    profile_key="alb",
                )
            )

    def report_alb_baseline(self, saturated: dict[str, WrkResult], name: str, cpu: dict[str, float]) -> None:
        """`--alb-baseline BIN`: what this build's data plane costs against that one (say, a build
        without the traffic-gate metrics), in the same rounds."""
        ratio = paired_ratio(saturated["local ALB"], saturated[name])
        cpu_cost = cpu["local ALB"] / cpu[name] - 1
        self.report.text(
            "alb",
            f"Against the baseline build `{self.args.alb_baseline}` in the same rounds: req/s paired ratio "
            f"{ratio:.3f}; CPU per request {cpu['local ALB']:.2f} µs against {cpu[name]:.2f} µs "
            f"({cpu_cost * 100:+.1f} %).",
        )
        cost = 1 - ratio
        self.report.goal(
            Goal(
                "alb",
                "local ALB: req/s cost against the baseline build (`--alb-baseline`, saturating)",
                f"≤ {ALB_COUNTING_COST_GOAL * 100:.0f} %",
                f"{cost * 100:+.1f} % (req/s paired ratio {ratio:.3f}; CPU per request {cpu_cost * 100:+.1f} %)",
                cost <= ALB_COUNTING_COST_GOAL,
                ALB_COUNTING_COST_GOAL / max(cost, 0.001),
                profile=lambda: self.profile_alb(),
            )
        )

    # --- migrate ------------------------------------------------------------------

    def migrate_config(self, bases: dict[str, str], alb_base: str, control: str) -> Path:
        text = (ROOT / "migrate.toml").read_text()
        text = text.replace("http://127.0.0.1:8080", alb_base).replace("http://127.0.0.1:9100", control)
        for index, service in enumerate(SERVICES):
            text = text.replace(f"http://127.0.0.1:{3000 + index}", bases[service])
        path = self.work / "migrate.toml"
        path.write_text(text)
        return path

    def migrate(self, *command: str) -> tuple[float, subprocess.CompletedProcess]:
        argv = [str(RELEASE / "migrate"), "--config", str(self.work / "migrate.toml"), *command]
        started = time.monotonic()
        run = subprocess.run(argv, capture_output=True, check=False, text=True, cwd=self.work)
        wall = (time.monotonic() - started) * 1000
        if run.returncode != 0:
            raise BenchError(f"`migrate {' '.join(command)}` exited {run.returncode}:\n{run.stdout}{run.stderr}")
        return wall, run

    def users_healthy(self) -> bool:
        report = json.loads(self.migrate("status", "users", "--output", "json")[1].stdout)
        route = next(route for route in report["routes"] if route["route"] == "users")
        return route["healthy"] > 0 and route["unhealthy"] == 0

    @staticmethod
    def calls_of(stderr: str) -> tuple[list[str], float | None, float]:
        """The ELBv2 actions `-v` printed, the in-process wall time of its summary, and
        the part of it spent waiting for the lock to settle (0 when it says none)."""
        actions = re.findall(r"^migrate: elbv2 (\w+) ", stderr, re.MULTILINE)
        summary = re.search(r"ELBv2 calls.*?([\d.]+) ms wall", stderr)
        settle = re.search(r"of which ([\d.]+) ms waiting for the lock to settle", stderr)
        return actions, float(summary[1]) if summary else None, float(settle[1]) if settle else 0.0

    def migrate_section(self) -> None:
        runs = self.args.migrate_runs
        log(f"\n== migrate: shift users (direct) and rollback users on the local stack, {runs} times each")
        bases = self.start_services()
        alb, alb_base, control = self.start_alb(
            "local-alb-migrate", self.stack_file("stack-migrate", bases, interval=5)
        )
        self.migrate_config(bases, alb_base, control)
        self.migrate("init")
        waited = time.monotonic()
        while not self.users_healthy():
            if time.monotonic() - waited > 60:
                raise BenchError("the users target group did not become healthy within 60 s")
            time.sleep(0.5)
        log(f"  users target healthy after {time.monotonic() - waited:.1f} s (health-check interval 5 s)")
        commands = {
            "shift": ("shift", "users", "--steps", "100", "-v"),
            "rollback": ("rollback", "users", "-v"),
            "shift --skip-parity": ("shift", "users", "--steps", "100", "--skip-parity", "-v"),
            # The lock's settle (default 500 ms) waits for AWS's tag consistency, which
            # the local ALB does not need: the same two commands without it.
            "shift --lock-settle 0s": ("shift", "users", "--steps", "100", "--lock-settle", "0s", "-v"),
            "rollback --lock-settle 0s": ("rollback", "users", "--lock-settle", "0s", "-v"),
            "status": ("status", "-v"),
        }
        order = (
            "shift",
            "rollback",
            "shift --skip-parity",
            "rollback",
            "shift --lock-settle 0s",
            "rollback --lock-settle 0s",
            "status",
        )
        measured: dict[str, list[tuple[float, float | None, list[str], float]]] = {kind: [] for kind in commands}
        for _ in range(runs):
            for kind in order:
                wall, run = self.migrate(*commands[kind])
                actions, inner, settle = self.calls_of(run.stderr)
                measured[kind].append((wall, inner, actions, settle))
                routing = sum(action in ROUTING_CALLS for action in actions)
                log(
                    f"  {kind:<26} {wall:6.0f} ms process wall, {inner or 0:6.1f} ms in-process "
                    f"({settle:5.1f} ms waiting for the lock to settle), "
                    f"{len(actions)} ELBv2 calls, {routing} changing routing: {' '.join(actions)}"
                )
                # A rule changed less than 2 s before migrate's first read is read twice
                # (another operator may be mid-change); space the runs like operators would.
                if kind != "status":
                    time.sleep(2.2)
        self.fleet.stop(alb)
        rows = []
        for kind, samples in measured.items():
            walls = [wall for wall, _, _, _ in samples]
            inner = [value for _, value, _, _ in samples if value is not None]
            settles = [settle for _, _, _, settle in samples]
            # migrate's own time: the process wall but for the wait for the lock's settle.
            own = [wall - settle for wall, _, _, settle in samples]
            counts = [len(actions) for _, _, actions, _ in samples]
            routing = [sum(a in ROUTING_CALLS for a in actions) for _, _, actions, _ in samples]
            command = " ".join(part for part in commands[kind] if part != "-v")
            rows.append(
                [
                    f"`migrate {command}`",
                    f"{min(walls):.0f} / {statistics.median(walls):.0f} / {max(walls):.0f}",
                    f"{statistics.median(inner):.0f}" if inner else "—",
                    f"{statistics.median(settles):.0f}",
                    f"{statistics.median(own):.0f}",
                    f"{min(counts)}–{max(counts)}",
                    f"{min(routing)}–{max(routing)}",
                    " ".join(samples[-1][2]),
                ]
            )
            if kind in ("shift", "rollback"):  # the goals: a direct cutover with its gates, a rollback
                median = statistics.median(own)
                most = MIGRATE_CALLS_GOAL[kind]
                ok_calls = max(counts) <= most and set(routing) == {1}
                self.report.goal(
                    Goal(
                        "migrate",
                        f"migrate {kind}: median process wall time beyond the lock's settle "
                        f"(with it: {statistics.median(walls):.0f} ms)",
                        f"< {MIGRATE_WALL_GOAL_MS:.0f} ms",
                        f"{median:.0f} ms",
                        median < MIGRATE_WALL_GOAL_MS,
                        MIGRATE_WALL_GOAL_MS / max(median, 1.0),
                    )
                )
                self.report.goal(
                    Goal(
                        "migrate",
                        f"migrate {kind}: ELBv2 calls, of which routing changes",
                        f"≤ {most}, exactly 1",
                        f"{min(counts)}–{max(counts)}, {min(routing)}–{max(routing)}",
                        ok_calls,
                        1.0 if ok_calls else 0.5,
                    )
                )
        self.report.table(
            "migrate",
            [
                "command",
                "process wall ms min / median / max",
                "in-process wall ms (median)",
                "of which waiting for the lock to settle ms (median)",
                "process wall beyond the settle ms (median)",
                "ELBv2 calls",
                "changing routing",
                "calls (last run)",
            ],
            rows,
            note=f"{runs} rounds of `migrate shift users --steps 100 -v` (direct cutover, parity gate on), "
            "`migrate rollback users -v`, the same shift with `--skip-parity` (to show the gate's "
            "share), `rollback` again, the shift and the rollback with `--lock-settle 0s`, and "
            "`migrate status -v` (release build) against the local "
            "ALB (repo stack file, health-check interval 5 s, the shortest AWS allows, timeout 4 s) in front of the real monolith and "
            "services; 2.2 s between writes. Process wall: spawn to exit, measured by this script; "
            "in-process wall: migrate's own `-v` summary, which also says how long it waited for "
            "the lock to settle. That wait (`--lock-settle`, default 500 ms from the lock's AddTags "
            "to the first write's lock check) is there for AWS, which documents no read-after-write "
            "consistency for tags: a second operator whose lock tag was not visible yet is seen "
            "after it, before anything is written. It is a fixed wait, not migrate's work, and the "
            "reads and gates before the first write run during it; so the < 300 ms goals judge the "
            "process wall beyond the settle (the wall with it stays in the goal's line and the table).",
        )

    # --- verify -------------------------------------------------------------------

    def verify(self) -> None:
        self.verify_pairs()
        if self.args.verify_log_lines:
            self.verify_log()

    def verify_pairs(self) -> None:
        pairs, concurrency = self.args.verify_pairs, self.args.verify_concurrency
        log(f"\n== verify: the parity checker, {pairs} pairs, concurrency {concurrency}, monolith vs users")
        bases = self.start_services()
        run = subprocess.run(
            [str(RELEASE / "examples" / "bench"), bases["monolith"], bases["users"], str(pairs), str(concurrency)],
            capture_output=True,
            check=False,
            text=True,
        )
        match = re.search(r"([\d.]+) compared pairs/s", run.stdout)
        if run.returncode != 0 or not match:
            raise BenchError(f"the parity bench failed ({run.returncode}):\n{run.stdout}{run.stderr}")
        rate = float(match[1])
        log("  " + run.stdout.strip().replace("\n", "\n  "))
        self.report.table(
            "verify",
            ["measured", "value"],
            [
                ["compared pairs/s", f"{rate:.0f}"],
                ["pairs", str(pairs)],
                ["concurrency", str(concurrency)],
                ["run", run.stdout.strip().splitlines()[-1]],
            ],
            note="`migrate/parity/examples/bench` (release): the users route's request templates "
            "(ids and odd spellings, HEAD, OPTIONS) cycled; each pair is one candidate "
            "request and two baseline requests (noise detection), compared. Against the "
            "monolith and the users service directly, as `migrate verify` does.",
        )
        self.report.goal(
            Goal(
                "verify",
                "verify: compared pairs per second",
                f"≥ {VERIFY_GOAL:.0f}",
                f"{rate:.0f}",
                rate >= VERIFY_GOAL,
                rate / VERIFY_GOAL,
                profile=lambda: self.profile_command(
                    [
                        str(RELEASE / "examples" / "bench"),
                        self.start_services()["monolith"],
                        self.start_services()["users"],
                        str(pairs),
                        str(concurrency),
                    ]
                ),
            )
        )

    def alb_log(self, path: Path, lines: int, users: int) -> None:
        """Writes an ALB access log of `lines` lines in AWS's format (the fields and quoting
        of docs.aws.amazon.com's "Access log entries"): mostly the users route's GETs of
        ids skewed towards the low ones (some past the data, answered 204), its list, HEADs,
        POSTs (not replayed without --allow-unsafe), other routes' paths, and lines with no
        request (the ALB could not parse it), as an hour of a busy forum would have."""
        import random

        rng = random.Random(1)
        host = "ficus-local-1234567890.us-east-1.elb.amazonaws.com"
        target_group = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/users/73e2d6bc24d8a067"
        agents = ('"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"', '"curl/8.5.0"')
        with open(path, "w") as out:
            chunk = []
            for index in range(lines):
                pick = rng.random()
                user = int(rng.random() ** 2 * users * 1.2) + 1
                if pick < 0.80:
                    method, target = "GET", f"/api/users/{user}"
                elif pick < 0.85:
                    method, target = "GET", "/api/users"
                elif pick < 0.88:
                    method, target = "HEAD", f"/api/users/{user % 1000 + 1}"
                elif pick < 0.90:
                    method, target = "POST", "/api/users"
                elif pick < 0.98:
                    method, target = "GET", f"/api/posts/by-user/{user}"
                elif pick < 0.99:
                    method, target = "GET", f"/api/users/{user % 100 + 1}?fields=name&v={user % 7}"
                else:
                    method, target = "-", "-"
                second, micro = divmod(index * 3600_000_000 // lines, 1_000_000)
                minute, second = divmod(second, 60)
                time_field = f"2026-12-03T10:{minute:02d}:{second:02d}.{micro:06d}Z"
                request = (
                    '"- - - "' if method == "-" else f'"{method} http://{host}:80{target} HTTP/1.1"'
                )
                status = "400" if method == "-" else "200"
                chunk.append(
                    f"http {time_field} app/ficus-local/50dc6c495c0c9188 203.0.113.{index % 250 + 1}:{40000 + index % 20000} "
                    f"10.0.1.{index % 4 + 10}:3001 0.000 0.001 0.000 {status} {status} 141 {340 + user % 200} "
                    f"{request} {agents[index % 2]} - - {target_group} "
                    f'"Root=1-674ee3a0-{index:024x}" "-" "-" 0 {time_field} "forward" "-" "-" '
                    f'"10.0.1.{index % 4 + 10}:3001" "{status}" "-" "-" TID_{index:032x}\n'
                )
                if len(chunk) == 10000:
                    out.write("".join(chunk))
                    chunk.clear()
            out.write("".join(chunk))

    def verify_log(self) -> None:
        """`migrate verify users --from-alb-log` of a generated 1M-line ALB log, plain and gzip:
        its peak RSS (the log is streamed) and compared pairs/s."""
        lines, users = self.args.verify_log_lines, 10000
        log(f"\n== verify: `migrate verify users --from-alb-log` of a {lines:,}-line ALB access log, plain and gzip")
        data, _ = self.generate(users)
        servers = {name: start_server(self.fleet, name, data, name=f"{name}-verify")[1] for name in ("monolith", "users")}
        data.unlink()
        started = time.monotonic()
        plain = self.work / "access.log"
        self.alb_log(plain, lines, users)
        gzipped = self.work / "access.log.gz"
        subprocess.run(["gzip", "-1", "-k", "-f", str(plain)], check=True)
        log(
            f"  log written in {time.monotonic() - started:.1f} s: {plain.stat().st_size / 1e6:.0f} MB plain, "
            f"{gzipped.stat().st_size / 1e6:.0f} MB gzip"
        )
        self.migrate_config(servers | {"threads": "http://127.0.0.1:9", "posts": "http://127.0.0.1:9"},
                            "http://127.0.0.1:9", "http://127.0.0.1:9")
        rows = []
        worst: tuple[float, float] | None = None
        for label, path in (("plain", plain), ("gzip", gzipped)):
            argv = [
                str(RELEASE / "migrate"), "--config", str(self.work / "migrate.toml"),
                "verify", "users", "--from-alb-log", str(path), "--output", "json",
                "--concurrency", str(self.args.verify_concurrency),
            ]
            spawned = time.monotonic()
            with open(self.work / f"verify-{label}.json", "wb") as stdout, open(self.work / f"verify-{label}.err", "wb") as stderr:
                process = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, cwd=self.work)
                _, status, usage = os.wait4(process.pid, 0)
                process.returncode = os.waitstatus_to_exitcode(status)
            wall = time.monotonic() - spawned
            text = (self.work / f"verify-{label}.json").read_text()
            if process.returncode != 0:
                raise BenchError(
                    f"`migrate verify` of the {label} log exited {process.returncode}:\n{text[-2000:]}"
                    f"{(self.work / f'verify-{label}.err').read_text()[-2000:]}"
                )
            report = json.loads(text)["routes"][0]
            peak_mib = usage.ru_maxrss / 1024
            skipped = sum(s["count"] for source in report["inputs"] for s in source["skipped"].values())
            rate = report["pairs_per_second"]
            log(
                f"  {label}: {lines:,} lines, {report['requests']:,} distinct requests compared "
                f"({report['duplicates']:,} duplicates, {skipped:,} lines skipped), {rate:.0f} pairs/s, "
                f"{report['matched']:,} matched, process wall {wall:.1f} s, peak RSS {peak_mib:.1f} MiB"
            )
            rows.append(
                [
                    label,
                    f"{path.stat().st_size / 1e6:.0f}",
                    f"{lines:,}",
                    f"{report['requests']:,}",
                    f"{report['duplicates']:,}",
                    f"{skipped:,}",
                    f"{rate:.0f}",
                    f"{wall:.1f}",
                    f"{peak_mib:.1f}",
                ]
            )
            worst = (
                (min(worst[0], rate), max(worst[1], peak_mib)) if worst else (rate, peak_mib)
            )
        plain.unlink()
        gzipped.unlink()
        self.report.table(
            "verify",
            ["log", "MB", "lines", "distinct requests compared", "duplicates", "lines skipped", "pairs/s", "process wall s", "peak RSS MiB"],
            rows,
            note=f"`migrate verify users --from-alb-log FILE --output json --concurrency {self.args.verify_concurrency}` "
            f"(release) of a {lines:,}-line access log that this script writes in AWS's access-log format "
            "(an hour of a busy ALB: GETs of ids skewed towards the low ones, the list, HEADs, POSTs, other "
            "routes' paths, lines with no request), plain and `gzip -1`; the monolith and the users service on "
            f"`gen-data` data of {users:,} rows each. Requests are replayed once each (duplicates counted); peak RSS "
            "is the process's `ru_maxrss`; pairs/s is verify's own figure (its JSON report).",
        )
        rate, peak = worst
        self.report.goal(
            Goal(
                "verify",
                f"verify --from-alb-log ({lines:,} lines): peak RSS, plain and gzip",
                f"< {VERIFY_LOG_RSS_GOAL_MIB:.0f} MiB",
                f"{peak:.1f} MiB",
                peak < VERIFY_LOG_RSS_GOAL_MIB,
                VERIFY_LOG_RSS_GOAL_MIB / peak,
            )
        )
        self.report.goal(
            Goal(
                "verify",
                f"verify --from-alb-log ({lines:,} lines): compared pairs per second",
                f"≥ {VERIFY_GOAL:.0f}",
                f"{rate:.0f}",
                rate >= VERIFY_GOAL,
                rate / VERIFY_GOAL,
            )
        )

    # --- profile ------------------------------------------------------------------

    def perf_report(self, data: Path) -> str:
        def report(*sort: str) -> list[str]:
            run = subprocess.run(
                ["perf", "report", "-i", str(data), "--stdio", "--no-children", "-g", "none", *sort],
                capture_output=True,
                check=False,
                text=True,
            )
            return [
                re.sub(r"\s+-\s+-\s*$", "", line).rstrip()
                for line in run.stdout.splitlines()
                if line.strip() and not line.startswith("#")
            ]

        by_binary = report("--sort", "dso")
        return "\n".join(
            [
                "self time by binary:",
                *by_binary[:6],
                "",
                "hottest symbols (self time):",
                *report("--sort", "dso,symbol", "--percent-limit", "0.7")[:30],
                "",
                *profile_reading(by_binary, report("--sort", "symbol")),
            ]
        )

    def perf_during_wrk(self, pid: int, url: str, name: str) -> str:
        data = self.work / f"{name}.perf"
        perf = subprocess.Popen(
            ["perf", "record", "-F", "999", "-g", "-o", str(data), "-p", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            result = wrk(url, self.profile_load)
            show(f"under perf: {name}", result)
        finally:
            perf.send_signal(2)
            perf.wait()
        return self.perf_report(data)

    def profile_server(self, server: str, path: str) -> str:
        process, base, _ = start_server(self.fleet, server, name=f"{server}-profiled")
        try:
            return (
                f"`perf record -g` of `{server}` under `{self.profile_load.describe()} {path}`:\n\n"
                + self.perf_during_wrk(process.pid, base + path, f"{server}-profile")
            )
        finally:
            self.fleet.stop(process)

    def profile_alb(self, extra_rules: int = 0, logged: bool = False) -> str:
        bases = self.start_services()
        if logged:
            stack = self.logged_stack_file("stack-profile-logged", bases)
            extra = ["--access-log-root", str(self.work / "access-logs-profiled")]
        else:
            stack, extra = self.stack_file("stack-profile", bases, extra_rules), []
        alb, alb_base, _ = self.start_alb("local-alb-profiled", stack, extra=extra)
        try:
            return (
                f"`perf record -g` of `local-alb` ({1 + extra_rules} rules"
                f"{', access logs on' if logged else ''}) under "
                f"`{self.profile_load.describe()} {self.args.alb_path}`:\n\n"
                + self.perf_during_wrk(alb.pid, alb_base + self.args.alb_path, "local-alb-profile")
            )
        finally:
            self.fleet.stop(alb)

    def profile_command(self, argv: list[str]) -> str:
        data = self.work / "command.perf"
        subprocess.run(
            ["perf", "record", "-F", "999", "-g", "-o", str(data), "--", *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        return f"`perf record -g -- {' '.join(Path(a).name for a in argv[:1])} ...`:\n\n" + self.perf_report(data)

    def profile(self) -> None:
        """Each missed goal's case under perf, once per case; with none missed, the
        figure closest to missing."""
        candidates = [goal for goal in self.report.goals if goal.profile is not None]
        if not candidates:
            log("\n== profile: no measured figure can be profiled")
            return
        missed = [goal for goal in candidates if not goal.met]
        chosen = missed or [min(candidates, key=lambda goal: goal.score)]
        cases: dict[str, list[Goal]] = {}
        for goal in chosen:
            cases.setdefault(goal.profile_key or goal.what, []).append(goal)
        for goals in cases.values():
            names = "; ".join(f"{goal.what} — {goal.measured} against {goal.goal}" for goal in goals)
            log(f"\n== profile: {names}")
            text = goals[0].profile()
            log(text)
            why = "missed" if missed else "the figure closest to missing its goal; every goal was met"
            command, _, body = text.partition(":\n\n")
            body, _, reading = body.partition("\n\nReading:")
            spread = [line for goal in goals if (line := within_spread(goal))]
            self.report.profile += [
                f"Profiled ({why}): {names}.",
                "",
                "```",
                body,
                "```",
                "",
                command,
                "",
                *([f"Reading:{reading}", ""] if reading else []),
                *[line + "\n" for line in spread],
            ]

    # --- document -----------------------------------------------------------------

    def versions(self) -> dict[str, str]:
        def first_line(argv: list[str]) -> str:
            try:
                run = subprocess.run(argv, capture_output=True, check=False, text=True)
                return (run.stdout + run.stderr).strip().splitlines()[0]
            except (OSError, IndexError):
                return "unknown"

        cpu = "unknown"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, check=False, text=True
        ).stdout.strip()
        return {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{self.cores} cores ({cpu}), {platform.system()} {platform.release()}",
            "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "commit": commit + (" (with uncommitted changes)" if dirty else ""),
            "wrk": first_line(["wrk", "-v"]),
            "nginx": first_line([self.args.nginx, "-v"]),
            "rustc": first_line(["rustc", "--version"]),
            "python": platform.python_version(),
            "binaries": "release profile (`cargo build --release`)",
        }

    def write(self, started: float, settings: dict[str, str]) -> None:
        settings["wall time of this run"] = f"{time.monotonic() - started:.0f} s"
        lines = [
            "# Benchmarks",
            "",
            (
                "Regenerated by `scripts/bench` (do not edit by hand; the closing note comes from "
                "`scripts/bench-lib/closing-note.md`). Every figure is measured in the same run as the "
                "reference it is compared with, one case after the other, on a shared machine: read "
                "the ratios, not the absolute numbers."
            ),
            "",
        ]
        lines += ["| setting | value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in settings.items()]
        lines += ["", "## Goals", "", "| section | measured | goal | value | met |", "|---|---|---|---|---|"]
        lines += [f"| {g.section} | {g.what} | {g.goal} | {g.measured} | {met(g.met)} |" for g in self.report.goals]
        titles = {
            "services": "1. Services vs nginx static",
            "scale": "2. Scale",
            "alb": "3. Local ALB",
            "migrate": "4. migrate cutover and rollback",
            "verify": "5. verify (parity checker)",
        }
        for section in SECTIONS:
            if section in self.report.sections:
                lines += ["", f"## {titles[section]}", ""] + self.report.sections[section]
        if self.report.profile:
            lines += ["", "## Profiles (`scripts/bench --profile`)", ""] + self.report.profile
        note = LIB / "closing-note.md"
        if note.exists():
            lines += ["", note.read_text().strip()]
        if self.args.out is None:
            log("\n(partial run: no document written; pass --out FILE to write one)")
            return
        self.args.out.write_text("\n".join(lines).rstrip() + "\n")
        log(f"\nwrote {self.args.out}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only this section (repeatable)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile each missed goal's case under perf (once per case); with every goal met, the figure "
        "closest to missing",
    )
    parser.add_argument(
        "--seconds", type=int, default=2, help="wrk duration per case and round (default 2; the scale lookups use 2.5×)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the compared cases, taking turns; medians reported (default 3)"
    )
    parser.add_argument(
        "--alb-seconds", type=int, default=3, help="wrk duration per saturating local ALB case and round (default 3)"
    )
    parser.add_argument(
        "--services-rounds",
        type=int,
        default=5,
        help="rounds of the services cases, taking turns (default 5: the lowest ratio to nginx over "
        "every route is a goal, and a minimum over many noisy ratios needs more rounds; each round "
        "adds about a minute)",
    )
    parser.add_argument("--alb-path", default="/api/threads/2", help="path of the local ALB cases")
    parser.add_argument(
        "--alb-rounds",
        type=int,
        default=5,
        help="rounds of the local ALB cases, taking turns (default 5: its ratio to nginx is a goal)",
    )
    parser.add_argument(
        "--guard-rounds",
        type=int,
        default=5,
        help=f"rounds of the local ALB's guard cases ({MANY_CONNECTIONS} connections, h2c), taking turns (default 5: "
        "each is a goal against nginx, and a median of 3 noisy ratios swung by ±10 %% here)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 3 when any goal is missed (a guard for CI or before a merge); every goal prints PASS or MISS",
    )
    parser.add_argument(
        "--alb-baseline",
        metavar="BIN",
        help="another local-alb binary (say, a build of main) to run as one more case in the same rounds",
    )
    parser.add_argument(
        "--sizes",
        default="10000,100000,1000000",
        help="rows each of users, threads, posts per scale step (default 10000,100000,1000000)",
    )
    parser.add_argument("--migrate-runs", type=int, default=5, help="runs of each migrate command (default 5)")
    parser.add_argument("--verify-pairs", type=int, default=50000, help="pairs in the verify run (default 50000)")
    parser.add_argument(
        "--verify-concurrency", type=int, default=32, help="pairs in flight in the verify run (default 32)"
    )
    parser.add_argument(
        "--verify-log-lines",
        type=int,
        default=1_000_000,
        help="lines of the ALB access log `migrate verify --from-alb-log` replays (default 1000000; 0 skips it)",
    )
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    parser.add_argument(
        "--out",
        type=Path,
        help="the document to write (default: docs/benchmarks.md for a full run; "
        "with --only, nothing is written unless --out is given)",
    )
    args = parser.parse_args(argv)
    if args.out is None and not args.only:
        args.out = ROOT / "docs" / "benchmarks.md"
    try:
        args.sizes = sorted(int(size) for size in args.sizes.split(","))
    except ValueError:
        parser.error(f"--sizes takes comma-separated row counts such as 10000,100000, not {args.sizes!r}")
    if not args.sizes or args.sizes[0] < 1:
        parser.error("--sizes needs at least one positive row count")
    if (
        min(
            args.seconds,
            args.rounds,
            args.services_rounds,
            args.alb_seconds,
            args.alb_rounds,
            args.migrate_runs,
            args.verify_pairs,
            args.verify_concurrency,
            args.guard_rounds,
        )
        < 1
        or args.verify_log_lines < 0
    ):
        parser.error(
            "--seconds, --rounds, --services-rounds, --alb-seconds, --alb-rounds, --guard-rounds, --migrate-runs, "
            "--verify-pairs and --verify-concurrency must be at least 1, --verify-log-lines at least 0"
        )
    if not args.alb_path.startswith("/"):
        parser.error(f"--alb-path must start with /, not {args.alb_path!r}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sections = args.only or list(SECTIONS)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ficus-bench-") as work:
        suite = Suite(args, Path(work))
        settings = suite.versions()
        settings.update(
            {
                "load": f"`{suite.load.describe()}` per case and round, rounds taking turns: "
                f"{args.services_rounds} for services, {args.alb_rounds} for the local ALB "
                f"({args.alb_seconds} s for its saturating cases), {args.rounds} for the others",
                "sections run": ", ".join(sections),
            }
        )
        log("\n".join(f"{key}: {value}" for key, value in settings.items()))
        try:
            for section in sections:
                {
                    "services": suite.services,
                    "scale": suite.scale,
                    "alb": suite.alb,
                    "migrate": suite.migrate_section,
                    "verify": suite.verify,
                }[section]()
            if args.profile:
                suite.profile()
        except (BenchError, subprocess.CalledProcessError, OSError) as error:
            print(f"bench: {error}", file=sys.stderr)
            return 1
        finally:
            suite.fleet.stop_all()
        suite.write(started, settings)
    log(f"\nbench: {', '.join(sections)} in {time.monotonic() - started:.0f} s")
    log("\n".join(f"{'PASS' if g.met else 'MISS'}  {g.what}: {g.measured} (goal {g.goal})" for g in suite.report.goals))
    missed = [g for g in suite.report.goals if not g.met]
    if args.check and missed:
        print(f"bench: {len(missed)} of {len(suite.report.goals)} goals missed (--check)", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
