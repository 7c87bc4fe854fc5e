"""`runmesh dev`'s start-up: the command until the gateway and every service serve.

Each round starts `python -m runmesh.cli dev --no-demo` as a user does (its own sandbox, a
fresh RUNMESH_HOME, no RUNMESH_* servers) and times it until `dev.json` is written, which
`runmesh dev` does once the gateway answers and every service's worker serves its topic; then
it is stopped with SIGTERM. The baseline is the floor under it: a process that imports the
sandbox and starts it (Tansu, PostgreSQL, moto), timed the same way until it is ready.

Value = median seconds to ready, baseline = median seconds for the sandbox alone, ratio =
value / baseline. The issue's aim is an absolute one: ready in under 10 s. The JSON also
says what each part of the wait took in the last round, from the services' logs (their
first line is when their imports ended; `serving` is when their consumer group assigned
them partitions). `--rounds N` sets the rounds (default 3).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

CONNECTION_VARIABLES = (
    "RUNMESH_KAFKA_BOOTSTRAP",
    "RUNMESH_DATABASE_URL",
    "RUNMESH_S3_ENDPOINT_URL",
    "RUNMESH_HOME",
)
READY_TIMEOUT_S = 300.0
SANDBOX_ONLY = """
import asyncio, sys
from runmesh.core.settings import Settings
from runmesh.sandbox import Sandbox

async def main():
    async with Sandbox(Settings()):
        print("ready", flush=True)
        sys.stdin.read()

asyncio.run(main())
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONNECTION_VARIABLES}
    env["RUNMESH_HOME"] = str(home)
    env["RUNMESH_GATEWAY_PORT"] = "0"
    env["RUNMESH_LOG_FORMAT"] = "json"
    return env


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not ready within {READY_TIMEOUT_S:g}s")
        time.sleep(0.02)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def dev_round(home: Path) -> tuple[float, dict[str, float]]:
    """Seconds until `dev.json`, and per service when it logged first and when it served."""
    home.mkdir(parents=True)
    began = time.time()
    with (home / "dev.stderr").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "runmesh.cli", "dev", "--no-demo"],
            env=environment(home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_for(lambda: (home / "dev.json").exists() or process.poll() is not None, "runmesh dev")
        if process.poll() is not None:
            raise SystemExit((home / "dev.stderr").read_text()[-2000:])
        took = time.time() - began
    finally:
        stop(process)
    return took, phases(home, began)


def phases(home: Path, began: float) -> dict[str, float]:
    """From each service's JSON log (1 s stamps): its first line and its `serving` line."""
    found: dict[str, float] = {}
    for path in sorted(home.glob("sandbox/run-*/*.log")):
        name = path.stem
        lines = [line for line in path.read_text(errors="replace").splitlines() if line]
        stamps = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            stamp = datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
            stamps.append((stamp, record.get("message", "")))
        if not stamps:
            continue
        found[f"{name}_first_log_s"] = round(stamps[0][0] - began, 1)
        serving = [t for t, m in stamps if " serving" in m or "Uvicorn running" in m]
        if serving:
            found[f"{name}_serving_s"] = round(serving[0] - began, 1)
    return found


def sandbox_round(home: Path) -> float:
    home.mkdir(parents=True)
    began = time.time()
    process = subprocess.Popen(
        [sys.executable, "-c", SANDBOX_ONLY],
        env=environment(home),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None and process.stdin is not None
    line = process.stdout.readline()
    took = time.time() - began
    process.stdin.close()
    process.wait(timeout=120)
    if line.strip() != b"ready":
        raise SystemExit("the sandbox did not start")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    dev: list[float] = []
    floor: list[float] = []
    last: dict[str, float] = {}
    for index in range(rounds):
        with tempfile.TemporaryDirectory(prefix="dev-start-") as root:
            floor.append(sandbox_round(Path(root) / "sandbox-only"))
            took, last = dev_round(Path(root) / "dev")
            dev.append(took)
        log(f"round {index + 1}: runmesh dev ready in {took:.2f}s, sandbox {floor[-1]:.2f}s")
    value, baseline = statistics.median(dev), statistics.median(floor)
    print(
        json.dumps(
            {
                "bench": "dev_start",
                "value": round(value, 2),
                "unit": "s",
                "baseline": round(baseline, 2),
                "ratio": round(value / baseline, 2),
                "rounds": rounds,
                "aim_s": 10,
                "dev_s": [round(d, 2) for d in dev],
                "sandbox_s": [round(f, 2) for f in floor],
                "last_round": last,
                "baseline_desc": "a process that imports the sandbox and starts it",
            }
        )
    )


if __name__ == "__main__":
    main()
