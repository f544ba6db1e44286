#!/usr/bin/env python3
"""Runs the workspace's test binaries side by side, as `cargo test` would run
them one after another: each in its package's directory with cargo's
environment for it (CARGO, CARGO_MANIFEST_DIR, CARGO_PKG_NAME), its output
kept and printed whole when it ends, so that outputs never interleave.

Most of our integration tests wait (on servers starting, intervals, metric
periods), so binaries run one after another leave the cores idle: the
longest binary then sets the wall time instead of the sum of all. The
binaries come from cargo itself:

    cargo test --workspace --all-targets --no-run --message-format=json \\
        | run_tests.py [--jobs N] [-- TEST-ARGS...]

Usage: run_tests.py [--jobs N] [-- ARGS...]   (reads cargo's JSON on stdin)
  --jobs N   binaries running at once (default 4); the ones that took longest
             last time start first (times are kept in target/test-times.json)
  ARGS       passed to every test binary (a filter, --nocapture, ...)

Exit codes: 0 every binary passed, 1 a binary failed (its output is printed
again at the end), 2 bad usage or no test binary in the input.
"""

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time


def package_name(package_id):
    """`path+file:///w/forum#0.1.0` is forum; `path+file:///w/local#localstack@0.1.0` is localstack."""
    location, _, fragment = package_id.partition("#")
    if "@" in fragment:
        return fragment.split("@")[0]
    return location.rstrip("/").rsplit("/", 1)[-1]


def test_binaries(stream):
    """(package name, package dir, source path, executable) per test target."""
    found = []
    for line in stream:
        line = line.strip()
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        if message.get("reason") != "compiler-artifact":
            continue
        if not message.get("profile", {}).get("test") or not message.get("executable"):
            continue
        manifest = message["manifest_path"]
        package_dir = os.path.dirname(manifest)
        source = os.path.relpath(message["target"]["src_path"], package_dir)
        name = package_name(message["package_id"])
        found.append((name, package_dir, source, message["executable"]))
    return found


def run(binary, extra_args):
    name, package_dir, _source, executable = binary
    env = dict(os.environ)
    env.update(
        {
            "CARGO_MANIFEST_DIR": package_dir,
            "CARGO_PKG_NAME": name,
            "CARGO": os.environ.get("CARGO", "cargo"),
        }
    )
    started = time.monotonic()
    result = subprocess.run(
        [executable, *extra_args],
        cwd=package_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    return result.returncode, result.stdout.decode("utf-8", "replace"), time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=4, help="binaries running at once (default 4)")
    parser.add_argument("--times", default="target/test-times.json", help="where the binaries' last times are kept")
    parser.add_argument("args", nargs="*", help="arguments for every test binary (after --)")
    args = parser.parse_args()
    if args.jobs < 1:
        print("run_tests: --jobs must be at least 1", file=sys.stderr)
        return 2
    binaries = test_binaries(sys.stdin)
    if not binaries:
        print("run_tests: no test binary in cargo's output; pipe `cargo test --no-run --message-format=json` into it", file=sys.stderr)
        return 2
    try:
        with open(args.times) as file:
            last = json.load(file)
    except (OSError, ValueError):
        last = {}
    key = lambda binary: f"{binary[0]} {binary[2]}"
    binaries.sort(key=lambda binary: -last.get(key(binary), 0.0))
    failed = []
    times = {}
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        running = {pool.submit(run, binary, args.args): binary for binary in binaries}
        for future in concurrent.futures.as_completed(running):
            binary = running[future]
            code, output, seconds = future.result()
            times[key(binary)] = round(seconds, 2)
            print(f"     Running {binary[2]} ({binary[0]}, {os.path.relpath(binary[3])}) [{seconds:.1f} s]", flush=True)
            print(output.rstrip() or "(no output)", flush=True)
            if code != 0:
                failed.append((binary, code, output))
    try:
        os.makedirs(os.path.dirname(args.times) or ".", exist_ok=True)
        with open(args.times, "w") as file:
            json.dump(times, file, indent=1, sort_keys=True)
    except OSError:
        pass
    wall = time.monotonic() - started
    slowest = sorted(times.items(), key=lambda item: -item[1])[:3]
    print(
        f"\nrun_tests: {len(binaries)} test binaries, {len(failed)} failed, {wall:.0f} s "
        f"(slowest: {', '.join(f'{name} {seconds:.0f} s' for name, seconds in slowest)})",
        flush=True,
    )
    for binary, code, output in failed:
        print(f"\n---- FAILED: {binary[2]} of {binary[0]} (exit {code}); its output again:\n{output}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
