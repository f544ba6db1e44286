#!/usr/bin/env python3
"""Runs the `run:` steps of a GitHub Actions workflow on this machine, job by
job and step by step in order, as a runner would: bash -eo pipefail in the
repository, the workflow's and job's `env:` (with overrides), $RUNNER_TEMP,
$GITHUB_ENV and $GITHUB_STEP_SUMMARY. Steps that `uses:` an action are
skipped (they need GitHub); so are steps whose `if:` is not `always()`,
`env.NAME == ''` or `env.NAME != ''` (which are evaluated). Background
processes a job started are stopped when the job ends.

--prebuilt-workspace: each line of a step that is a plain `cargo build`
command runs with `--workspace --all-targets` added. scripts/test has already built the
workspace that way, so the step costs nothing, while cargo still checks what
the step names (its packages, --locked). Run as written, a build of a few
packages resolves other features than the whole workspace's and recompiles
every crate of ours (about 110 s of CPU in CI).

Usage: run_workflow_steps.py WORKFLOW --summary FILE [--set NAME=VALUE]...
           [--free-port NAME]... [--prebuilt-workspace] JOB...

Exit codes: 0 every step of every job passed, 1 a step failed, 2 bad usage or a
workflow this runner cannot run (an expression `${{ }}` inside a `run:` script:
pass values through `env:` instead, as GitHub's hardening guide says).
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def condition_holds(condition, env):
    """Evaluates the `if:` forms the example uses; None when unsupported."""
    condition = str(condition).strip()
    if condition.startswith("${{") and condition.endswith("}}"):
        condition = condition[3:-2].strip()
    if condition.startswith("always()"):
        return True
    match = re.fullmatch(r"env\.(\w+)\s*(==|!=)\s*''", condition)
    if match:
        empty = env.get(match.group(1), "") == ""
        return empty if match.group(2) == "==" else not empty
    return None


def group_members():
    """Processes of this process group other than this one."""
    own, members = os.getpgrp(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state, ppid, pgrp.
        if int(fields[2]) == own and fields[0] != "Z":
            members.append(int(entry))
    return members


def stop_background_processes():
    """SIGTERM to what the job's steps left running, SIGKILL after 10 s."""
    members = group_members()
    for pid in members:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while group_members() and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in group_members():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def read_github_env(path, env):
    with open(path) as file:
        for line in file:
            name, separator, value = line.rstrip("\n").partition("=")
            if separator:
                env[name] = value
    open(path, "w").close()


def widen_cargo_builds(script):
    """The script with `--workspace --all-targets` added to each line that is a
    plain `cargo build` command; None when it has no such line."""
    lines = script.splitlines()
    widened = [
        line.rstrip() + " --workspace --all-targets"
        if re.fullmatch(r"\s*cargo build( [\w./=-]+)*\s*", line)
        else line
        for line in lines
    ]
    return "\n".join(widened) + "\n" if widened != lines else None


def run_job(name, job, workflow_env, args):
    print(f"\n--- job {name}", flush=True)
    runner_temp = tempfile.mkdtemp(prefix=f"runner-{name}-")
    github_env = os.path.join(runner_temp, "github-env")
    open(github_env, "w").close()
    env = dict(os.environ)
    env.update({key: str(value) for key, value in workflow_env.items()})
    env.update({key: str(value) for key, value in (job.get("env") or {}).items()})
    env.update(dict(item.split("=", 1) for item in args.set))
    env.update({name: free_port() for name in args.free_port})
    env.update(
        {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "RUNNER_TEMP": runner_temp,
            "GITHUB_ENV": github_env,
            "GITHUB_STEP_SUMMARY": os.path.abspath(args.summary),
            "GITHUB_REPOSITORY": "local/ficus",
        }
    )
    try:
        for number, step in enumerate(job.get("steps") or [], start=1):
            title = step.get("name") or step.get("uses") or step.get("run", "").split("\n")[0]
            if "uses" in step:
                print(f"  skip {number}. {title} (uses {step['uses']}: needs GitHub)", flush=True)
                continue
            if "if" in step:
                holds = condition_holds(step["if"], env)
                if not holds:
                    why = "its if: is false" if holds is False else f"if: {step['if']} is not evaluated here"
                    print(f"  skip {number}. {title} ({why})", flush=True)
                    continue
            script = step["run"]
            if "${{" in script:
                print(f"run_workflow_steps: step {number} of job {name} has an expression in its script; pass it through env:", file=sys.stderr)
                return 2
            step_env = dict(env)
            step_env.update({key: str(value) for key, value in (step.get("env") or {}).items()})
            note = ""
            widened = widen_cargo_builds(script) if args.prebuilt_workspace else None
            if widened is not None:
                script = widened
                note = " (cargo build with --workspace --all-targets: built already)"
            print(f"  run  {number}. {title}{note}", flush=True)
            result = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                cwd=ROOT,
                env=step_env,
                stdin=subprocess.DEVNULL,
            )
            if result.returncode != 0:
                print(f"run_workflow_steps: job {name}, step {number} ({title}) exited {result.returncode}", file=sys.stderr)
                return 1
            read_github_env(github_env, env)
        return 0
    finally:
        stop_background_processes()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workflow")
    parser.add_argument("jobs", nargs="+", metavar="JOB")
    parser.add_argument("--summary", required=True, help="the step summary file")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--free-port", action="append", default=[], metavar="NAME")
    parser.add_argument(
        "--prebuilt-workspace",
        action="store_true",
        help="add --workspace --all-targets to each plain `cargo build` line (the workspace is built already)",
    )
    args = parser.parse_args()
    # Our own process group, so that a job's background processes can be found.
    os.setpgid(0, 0)
    with open(args.workflow) as file:
        workflow = yaml.safe_load(file)
    jobs = workflow.get("jobs") or {}
    for name in args.jobs:
        if name not in jobs:
            print(f"run_workflow_steps: no job {name} in {args.workflow}; it has {', '.join(jobs)}", file=sys.stderr)
            return 2
    for name in args.jobs:
        status = run_job(name, jobs[name], workflow.get("env") or {}, args)
        if status != 0:
            return status
    print(f"\nrun_workflow_steps: {len(args.jobs)} jobs of {args.workflow} passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
