"""Cold start: process spawn to ``initialize`` answered (ours, the bare SDK servers, the peers),
what the imports cost, and the operator CLI's wall time."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time

from bench import contenders as c
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


async def _until_initialized(server: StdioServer) -> float:
    async with server:
        return server.initialized_at - server.spawned_at


async def coldstart(services: Services, report: Report, *, reps: int = 5) -> None:
    """Spawn → ``initialize`` answered, next to the floors (bare Python, bare MCPServer, bare
    low-level Server) and the peers."""
    env = pg_env(services)
    starters = {
        "postgres server (ours)": lambda: StdioServer(PG_MODULE, env),
        "bare MCPServer": lambda: StdioServer(MINIMAL_MODULE, {}),
        "bare lowlevel Server": lambda: StdioServer(c.LOWLEVEL_MODULE, {}),
    }
    why_not = c.install_node_peers()
    if why_not:
        report.note(f"npm peers unavailable: {why_not}")
    else:
        starters[c.REFERENCE.name] = lambda: c.reference_server(services)
        starters[c.DBHUB.name] = lambda: c.dbhub_server(services)
    for start in starters.values():  # warm-up: .pyc files and page cache
        await _until_initialized(start())
    times: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(reps):  # interleaved
        times["python -c pass"].append(_run("-c", "pass"))
        times["import mcp_tenants.postgres.server (timed inside)"].append(_import_seconds())
        for name, start in starters.items():
            times[f"{name}: spawn -> initialize"].append(await _until_initialized(start()))
    for name, values in times.items():
        report.note(f"{name:50} {spread(values)}")
    ours = times["postgres server (ours): spawn -> initialize"]
    bare = times["bare MCPServer: spawn -> initialize"]
    ratio = median([o / b for o, b in zip(ours, bare, strict=True)])
    peers = {n: median(times[f"{n}: spawn -> initialize"]) for n in (c.REFERENCE.name, c.DBHUB.name) if not why_not}
    beside = "".join(f"; {median(ours) / v:.2f}x {n}" for n, v in peers.items())
    report.row(
        "5: cold start: postgres server spawn -> initialize answered, vs bare MCPServer",
        "<= 1.15x",
        f"{ms(median(ours))} vs {ms(median(bare))}",
        f"{ratio:.2f}x{beside}",
        ratio <= 1.15,
    )
    low = median(times["bare lowlevel Server: spawn -> initialize"])
    report.row(
        "5: floor: bare lowlevel Server / bare MCPServer spawn -> initialize",
        "(floor)",
        f"{ms(low)} / {ms(median(bare))}",
        "-",
        None,
    )
    imports = median(times["import mcp_tenants.postgres.server (timed inside)"])
    report.row(
        "5: import mcp_tenants.postgres.server (+ python start-up)",
        "(info)",
        f"{ms(imports)} (+ {ms(median(times['python -c pass']))})",
        f"{(imports + median(times['python -c pass'])) / median(ours):.0%} of cold start",
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


# -- the operator CLI ---------------------------------------------------------------------------

#: Packages the CLI should not need (the MCP SDK, the servers' stacks).
HEAVY = frozenset({"mcp", "mcp_types", "pydantic", "psycopg", "psycopg_pool", "minio", "starlette", "uvicorn", "anyio"})


def _cli_command() -> list[str]:
    """``mcp-tenants`` next to this Python (the console script a user runs), else ``-m``."""
    script = os.path.join(os.path.dirname(sys.executable), "mcp-tenants")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "mcp_tenants.cli"]


def _cli_seconds(args: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run(
        [*_cli_command(), *args],
        check=True,
        env={**clean_env(), **env},
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - began


def _cli_imports(args: list[str], env: dict[str, str]) -> tuple[set[str], float]:
    """Top-level packages ``mcp-tenants ARGS`` imports, and the seconds imports took."""
    code = "import runpy, sys; sys.argv[0] = 'mcp-tenants'; runpy.run_module('mcp_tenants.cli', run_name='__main__')"
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args],
        check=False,
        env={**clean_env(), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stderr
    packages, total = set(), 0
    for line in err.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            self_us, _, name = (part.strip() for part in line[len("import time:") :].split("|"))
            packages.add(name.strip().split(".")[0])
            total += int(self_us)
    return packages, total / 1e6


async def cli(services: Services, report: Report, *, reps: int = 7) -> None:
    """``mcp-tenants --help`` and ``mcp-tenants list`` (an empty Redis database): wall time, and
    whether the CLI imports the MCP SDK or the servers."""
    env = services.redis_env(9)
    cases = {"--help": ["--help"], "list": ["list"]}
    for args in cases.values():
        _cli_seconds(args, env)  # warm-up: .pyc files
    times: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(reps):
        times["python -c pass"].append(_run("-c", "pass"))
        for name, args in cases.items():
            times[name].append(_cli_seconds(args, env))
    for name, values in times.items():
        report.note(f"{name:20} {spread(values)}")
    for name, args in cases.items():
        packages, imports = _cli_imports(args, env)
        heavy = sorted(packages & HEAVY)
        report.note(f"mcp-tenants {name}: imports {ms(imports)}; heavy packages imported: {', '.join(heavy) or 'none'}")
    for name, limit in (("--help", 0.3), ("list", 0.5)):
        value = median(times[name])
        report.row(
            f"cli: mcp-tenants {name} wall time",
            f"<= {limit} s",
            ms(value),
            f"python -c pass {ms(median(times['python -c pass']))}",
            value <= limit,
        )
