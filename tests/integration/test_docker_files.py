"""The Docker files keep their contract; there is no Docker engine here, so they are parsed.

docker/docker-compose.yml follows the original design (redis:7-alpine as ``mcp-redis`` with
``--appendonly yes`` and the ``redis-data`` volume, the servers as ``mcp-postgres-server-new`` on
Redis DB 0 and ``mcp-minio-server-new`` on DB 1); docker/Dockerfile builds one image for both.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is in the test extra")

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "docker" / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"

SERVERS = {
    # service name: (console script, Redis DB, published host port)
    "mcp-postgres-server-new": ("mcp-postgres-server", "0", 8000),
    "mcp-minio-server-new": ("mcp-minio-server", "1", 8001),
}
HEALTH_COMMAND = "mcp-tenants-health"
SUBSTITUTION = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?P<op>:?[?-])?[^}]*\}")


# --- helpers ----------------------------------------------------------------------------------


def console_scripts() -> dict[str, str]:
    """Console scripts declared in setup.cfg: name -> ``module:function``."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict((part.strip() for part in line.split("=", 1)) for line in lines if "=" in line)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the last build stage (the image that runs)."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def exec_form(args: str) -> list[str]:
    """A JSON (exec form) argument list such as ``["mcp-postgres-server"]``."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def assert_pinned(image: str) -> None:
    """``name:tag`` with a version in the tag; never ``latest``, never an untagged name."""
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{image!r} has no tag"
    assert tag != "latest" and "latest" not in tag, f"{image!r} uses latest"
    assert re.search(r"\d", tag), f"{image!r}: the tag names no version"


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whether written as a mapping or a list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def health_test(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def ignored(path: str) -> bool:
    """Whether the build context would leave ``path`` out (``**/`` and trailing ``/`` handled)."""
    result = False
    for pattern in dockerignore_patterns():
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatch(path, c) or fnmatch.fnmatch(path.split("/")[-1], c) for c in candidates):
            result = not negate
    return result


# --- docker-compose.yml -----------------------------------------------------------------------


def test_compose_has_redis_both_servers_and_the_demo_targets() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", *SERVERS, "postgres", "minio"}
    names = {name: service.get("container_name") for name, service in services.items()}
    assert names["redis"] == "mcp-redis"
    for name in SERVERS:
        assert names[name] == name  # so `docker compose restart mcp-postgres-server-new` works


def test_compose_images_are_pinned_release_tags() -> None:
    services = compose()["services"]
    for name, service in services.items():
        assert "image" in service, f"{name} has no image"
        assert_pinned(service["image"])
    assert re.fullmatch(r"redis:7(\.\d+)*-alpine[\d.]*", services["redis"]["image"])
    assert re.fullmatch(r"postgres:16(\.\d+)*-alpine[\d.]*", services["postgres"]["image"])
    assert re.fullmatch(r"minio/minio:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", services["minio"]["image"])


def test_redis_appends_to_a_named_volume_and_is_health_checked() -> None:
    document = compose()
    redis = document["services"]["redis"]
    command = redis["command"] if isinstance(redis["command"], str) else " ".join(redis["command"])
    assert command.startswith("redis-server") and "--appendonly yes" in command
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-data" in document["volumes"]
    assert "redis-cli ping" in health_test(redis)


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_servers_serve_streamable_http_on_their_redis_db(name: str) -> None:
    script, redis_db, host_port = SERVERS[name]
    service = compose()["services"][name]
    env = environment(service)
    assert service["command"] == [script]
    assert env["REDIS_HOST"] == "redis"
    assert env["REDIS_DB"] == redis_db
    assert env["MCP_TRANSPORT"] == "streamable-http"
    assert env["MCP_HOST"] == "0.0.0.0"
    assert f"{host_port}:{env['MCP_PORT']}" in service["ports"]
    assert HEALTH_COMMAND in health_test(service)
    assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == DOCKERFILE


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_server_secrets_come_from_dotenv_substitution_and_are_required(name: str) -> None:
    env = environment(compose()["services"][name])
    for variable in ("MCP_AUTH_TOKEN", "MCP_TENANT_ENCRYPTION_KEY"):
        match = SUBSTITUTION.fullmatch(env[variable])
        assert match and match["name"] == variable and match["op"] == ":?", env[variable]


def test_no_secret_is_written_into_the_compose_file() -> None:
    secretish = re.compile(r"PASSWORD|SECRET|TOKEN|ENCRYPTION_KEY")
    for name, service in compose()["services"].items():
        for key, value in environment(service).items():
            if secretish.search(key):
                assert SUBSTITUTION.fullmatch(value), f"{name}: {key} is not taken from .env"


def test_every_substituted_variable_is_in_the_env_example() -> None:
    used = {match["name"] for match in SUBSTITUTION.finditer(COMPOSE.read_text())}
    example = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert used and used <= example, used - example


def test_servers_wait_for_healthy_redis_and_their_demo_target() -> None:
    services = compose()["services"]
    targets = {"mcp-postgres-server-new": "postgres", "mcp-minio-server-new": "minio"}
    for name, target in targets.items():
        depends = services[name]["depends_on"]
        assert depends["redis"] == {"condition": "service_healthy"}
        assert depends[target] == {"condition": "service_healthy"}


def test_demo_targets_are_health_checked_and_match_the_demo_tenants() -> None:
    services = compose()["services"]
    assert "pg_isready" in health_test(services["postgres"])
    assert "mc ready local" in health_test(services["minio"])
    pg_env = environment(services["mcp-postgres-server-new"])
    assert pg_env["POSTGRES_TENANT_DEMO_HOST"] == "postgres"
    assert pg_env["POSTGRES_TENANT_DEMO_PASSWORD"] == environment(services["postgres"])["POSTGRES_PASSWORD"]
    s3_env = environment(services["mcp-minio-server-new"])
    assert s3_env["MINIO_TENANT_DEMO_ENDPOINT"] == "minio:9000"
    assert s3_env["MINIO_TENANT_DEMO_SECRET_KEY"] == environment(services["minio"])["MINIO_ROOT_PASSWORD"]


def test_every_service_is_on_the_shared_network() -> None:
    document = compose()
    (network,) = document["networks"]
    for name, service in document["services"].items():
        assert network in service["networks"], name


# --- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_bases_are_pinned_slim_python() -> None:
    bases = [args.split()[0] for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert bases
    for base in bases:
        assert_pinned(base)
        assert re.fullmatch(r"python:3\.1[12](\.\d+)?-slim(-\w+)?", base), base


def test_dockerfile_runs_as_a_non_root_user_before_cmd() -> None:
    stage = final_stage()
    keywords = [keyword for keyword, _ in stage]
    assert "USER" in keywords and "CMD" in keywords
    user = [args for keyword, args in stage if keyword == "USER"][-1]
    assert user.split(":")[0] not in {"root", "0"}
    assert keywords.index("USER") < keywords.index("CMD")


def test_dockerfile_defaults_to_http_on_all_interfaces_with_the_port_exposed() -> None:
    stage = final_stage()
    env_text = " ".join(args for keyword, args in stage if keyword == "ENV")
    env = dict(re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", env_text))
    assert env["MCP_TRANSPORT"] == "streamable-http"
    assert env["MCP_HOST"] == "0.0.0.0"
    exposed = " ".join(args for keyword, args in stage if keyword == "EXPOSE").split()
    assert env.get("MCP_PORT", "8000") in exposed


def test_dockerfile_healthcheck_calls_the_health_command() -> None:
    checks = [args for keyword, args in final_stage() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    assert " CMD " in f" {checks[0]} " and HEALTH_COMMAND in checks[0]


def test_dockerfile_cmd_and_health_command_are_console_scripts() -> None:
    scripts = console_scripts()
    (cmd,) = [exec_form(args) for keyword, args in final_stage() if keyword == "CMD"]
    assert cmd == ["mcp-postgres-server"]
    assert not [args for keyword, args in final_stage() if keyword == "ENTRYPOINT"]  # `run IMAGE cmd` works
    for script in (*cmd, *(s for s, _, _ in SERVERS.values()), HEALTH_COMMAND):
        assert script in scripts, f"{script} is not a console script in setup.cfg"
    assert scripts[HEALTH_COMMAND] == "mcp_tenants.health:main"


def test_dockerfile_copies_only_files_that_exist_and_are_not_ignored() -> None:
    copies = [args for keyword, args in dockerfile_instructions() if keyword == "COPY" and "--from" not in args]
    sources = [source for args in copies for source in args.split()[:-1]]
    assert {"setup.cfg", "setup.py", "README.rst", "mcp_tenants"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source), f".dockerignore excludes {source}"


# --- .dockerignore ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [".venv", ".env", "docker/.env", ".git", ".pytest_cache", "mcp_tenants/__pycache__"])
def test_dockerignore_keeps_local_state_and_secrets_out_of_the_context(path: str) -> None:
    assert ignored(path)


# --- health checks: healthy within seconds, on whatever transport the command line says -------

#: The longest a server may wait for its first health check once it is up.
FEW_SECONDS = 5.0


def seconds(value: str) -> float:
    """A Docker duration (``5s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, value
    return sum(float(number) * units[unit] for number, unit in parts)


def dockerfile_healthcheck() -> tuple[dict[str, str], list[str]]:
    """(--flags, CMD in exec form) of the image's HEALTHCHECK."""
    (args,) = [args for keyword, args in final_stage() if keyword == "HEALTHCHECK"]
    flags, _, command = args.partition(" CMD ")
    options = dict(re.findall(r"--([a-z-]+)=(\S+)", flags))
    return options, exec_form(command.strip())


def test_dockerfile_healthcheck_reports_within_a_few_seconds_in_exec_form() -> None:
    options, command = dockerfile_healthcheck()
    first = seconds(options.get("start-interval", options["interval"]))
    assert first <= FEW_SECONDS, options
    assert "start-period" in options and seconds(options["timeout"]) <= seconds(options["interval"])
    # The command decides the transport itself (from the server's own options), not a shell test
    # of MCP_TRANSPORT that `--transport stdio` given as an argument would bypass.
    assert command[0] == HEALTH_COMMAND and "MCP_TRANSPORT" not in " ".join(command)


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_compose_healthchecks_report_within_a_few_seconds(name: str) -> None:
    check = compose()["services"][name]["healthcheck"]
    assert seconds(check.get("start_interval", check["interval"])) <= FEW_SECONDS
    assert "start_period" in check and seconds(check["timeout"]) <= seconds(check["interval"])
    assert check["test"][:2] == ["CMD", HEALTH_COMMAND]


def fake_proc(tmp_path: Path, processes: dict[int, tuple[int, list[str]]]) -> Path:
    """A /proc with ``pid: (parent pid, argv)`` entries."""
    proc = tmp_path / "proc"
    for pid, (parent, argv) in processes.items():
        entry = proc / str(pid)
        entry.mkdir(parents=True)
        (entry / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        (entry / "stat").write_text(f"{pid} ({Path(argv[0]).name[:15]}) S {parent} {pid} {pid} 0 -1\n")
    return proc


SCRIPT = ["/opt/mcp-tenants/bin/python", "/opt/mcp-tenants/bin/mcp-postgres-server"]


@pytest.mark.parametrize(
    "processes",
    [
        {1: (0, [*SCRIPT, "--transport", "stdio"])},
        {1: (0, [*SCRIPT, "--transport=stdio"])},
        {
            1: (0, ["/sbin/docker-init", "--", "mcp-minio-server", "--transport", "stdio"]),
            7: (1, ["mcp-minio-server", "--transport", "stdio"]),
        },
        {1: (0, ["python", "-m", "mcp_tenants.postgres", "--transport", "stdio"])},
        {1: (0, ["/bin/sh", "-c", "exec mcp-postgres-server --transport stdio"])},
    ],
)
def test_health_passes_for_a_server_started_with_transport_stdio(tmp_path, monkeypatch, capsys, processes) -> None:
    from mcp_tenants.health import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MCP_TRANSPORT", "streamable-http")  # the image's default, overridden by the argument
    assert main([], proc=fake_proc(tmp_path, processes)) == 0
    assert "stdio" in capsys.readouterr().err


def test_health_probes_the_port_and_transport_given_as_arguments(tmp_path, monkeypatch) -> None:
    from mcp_tenants.health import locate

    environ = {"MCP_TRANSPORT": "stdio", "MCP_PORT": "8000", "MCP_HOST": "0.0.0.0"}
    proc = fake_proc(tmp_path, {1: (0, [*SCRIPT, "--transport", "streamable-http", "--port", "9123"])})
    target = locate(environ, proc)
    assert (target.transport, target.url, target.pid) == ("streamable-http", "http://127.0.0.1:9123/mcp", 1)
    # On a host (PID 1 is its init) the environment decides, as before.
    host = fake_proc(tmp_path / "host", {1: (0, ["/sbin/init"]), 50: (1, [*SCRIPT, "--port", "9"])})
    assert locate(environ, host).transport == "stdio"
    assert locate({"MCP_PORT": "8123"}, host).url == "http://127.0.0.1:8123/mcp"
    assert locate({}, host).transport == "streamable-http"
