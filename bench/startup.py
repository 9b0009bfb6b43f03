"""Cold start: process spawn to ``initialize`` answered, and what the imports cost."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time

from bench.calls import pg_env
from bench.harness import MINIMAL_MODULE, PG_MODULE, ROOT, Report, Services, StdioServer, median, ms, spread


def clean_env() -> dict[str, str]:
    """The environment the servers get (StdioServer): PYTHONDONTWRITEBYTECODE or the like in
    this shell would make every import recompile stale .pyc files and skew the figures."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"), "PYTHONPATH": str(ROOT)}


def _run(*args: str) -> float:
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, *args],
        check=True,
        env=clean_env(),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - began


_IMPORT = "import time; t = time.perf_counter(); import mcp_tenants.postgres.server; print(time.perf_counter() - t)"


def _import_seconds() -> float:
    """Seconds ``import mcp_tenants.postgres.server`` takes in a fresh interpreter, timed inside it
    (timing the whole process would add the interpreter's teardown of ~1,000 modules)."""
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT], check=True, env=clean_env(), cwd=ROOT, capture_output=True, text=True
    ).stdout
    return float(out.strip())


async def _until_initialized(module: str, env: dict[str, str]) -> float:
    async with StdioServer(module, env) as server:
        return server.initialized_at - server.spawned_at


async def coldstart(services: Services, report: Report, *, reps: int = 5) -> None:
    """Spawn → ``initialize`` answered, next to the floors: bare Python, bare MCPServer."""
    env = pg_env(services)
    await _until_initialized(PG_MODULE, env)  # warm-up: .pyc files and page cache
    times: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(reps):  # interleaved
        times["python -c pass"].append(_run("-c", "pass"))
        times["import mcp_tenants.postgres.server (timed inside)"].append(_import_seconds())
        times["bare MCPServer: spawn -> initialize"].append(await _until_initialized(MINIMAL_MODULE, {}))
        times["postgres server: spawn -> initialize"].append(await _until_initialized(PG_MODULE, env))
    for name, values in times.items():
        report.note(f"{name:50} {spread(values)}")
    ours = median(times["postgres server: spawn -> initialize"])
    bare = median(times["bare MCPServer: spawn -> initialize"])
    report.row(
        "5: cold start: postgres server spawn -> initialize answered",
        "<= 400 ms",
        ms(ours),
        f"{ours / bare:.2f}x bare MCPServer ({ms(bare)})",
        ours <= 0.4,
    )
    report.row("5: floor: bare MCPServer spawn -> initialize answered", "(floor)", ms(bare), "-", None)
    imports = median(times["import mcp_tenants.postgres.server (timed inside)"])
    report.row(
        "5: import mcp_tenants.postgres.server (+ python start-up)",
        "(info)",
        f"{ms(imports)} (+ {ms(median(times['python -c pass']))})",
        f"{(imports + median(times['python -c pass'])) / ours:.0%} of cold start",
        None,
    )
    for line in import_profile():
        report.note(line)


def import_profile(runs: int = 3, top: int = 10) -> list[str]:
    """``python -X importtime``: self time summed per top-level package, and the slowest modules."""
    per_package: dict[str, list[float]] = collections.defaultdict(list)
    per_module: dict[str, list[float]] = collections.defaultdict(list)
    totals = []
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import mcp_tenants.postgres.server"],
            check=True,
            env=clean_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stderr
        package_self: collections.Counter[str] = collections.Counter()
        for line in err.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, cumulative_us, name = (part.strip() for part in line[len("import time:") :].split("|"))
            package_self[name.split(".")[0]] += int(self_us)
            per_module[name].append(int(self_us) / 1e6)
            if name == "mcp_tenants.postgres.server":
                totals.append(int(cumulative_us) / 1e6)
        for package, us in package_self.items():
            per_package[package].append(us / 1e6)
    total = median(totals)
    lines = [
        f"python -X importtime -c 'import mcp_tenants.postgres.server': {ms(total)} in all (median of {runs}); "
        "self time by top-level package:"
    ]
    ranked = sorted(per_package.items(), key=lambda kv: -median(kv[1]))
    lines += [f"    {ms(median(v)):>9} {median(v) / total:5.1%}  {k}" for k, v in ranked[:top]]
    lines.append("slowest single modules (self time):")
    ranked = sorted(per_module.items(), key=lambda kv: -median(kv[1]))
    lines += [f"    {ms(median(v)):>9}  {k}" for k, v in ranked[:top]]
    return lines
