"""Operational surfaces of a server process: readiness, ``/healthz`` and ``/readyz``, Prometheus metrics.

Tools never know this module exists; the server core uses it in three places:

- ``Readiness``: ``starting`` until the core has its tools and serves, ``ready`` then, and
  ``draining`` from the moment shutdown begins, so that a load balancer stops sending before the
  process stops serving.
- ``HealthEndpoints`` (or ``health_routes`` for a Starlette app): ``GET /healthz`` is 200 while
  the process serves (liveness); ``GET /readyz`` is 200 when ready and 503 while starting or
  draining (readiness). Both bodies say whether Redis is reachable; neither needs authentication,
  and neither touches Redis: they read the state the store already keeps, so a probe is cheap.
- ``Metrics``: ``call_started(tool)`` / ``call_finished(tool, outcome, seconds)`` from the one call
  wrapper, plus gauges read by callbacks at scrape time. ``metrics_for(settings)`` returns a no-op
  object unless ``MCP_METRICS_PORT`` is set; only then is ``prometheus_client`` imported and its
  HTTP server started (``/metrics`` on its own port). No label carries a tenant id: the series
  count depends on the tool list, not on the number of tenants.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.routing import Route

logger = logging.getLogger(__name__)

STARTING, READY, DRAINING = "starting", "ready", "draining"
#: Outcomes a call may end with (the ``outcome`` label).
OUTCOMES = ("ok", "error", "denied", "internal_error", "cancelled")
#: The ``tool`` label of calls whose name is not one of the server's tools.
OTHER_TOOL = "other"
#: Without the tool list, names that look like tool names get a label of their own, this many at most.
MAX_UNPROVEN_TOOL_LABELS = 32
_TOOL_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")


class Readiness:
    """The process's serving state: starting → ready → draining (never back).

    Thread-safety: the state is one string, replaced whole; readers need no lock.
    ``redis_up`` is a callback (the store's ``available`` flag), None when there is no store.
    """

    def __init__(self, redis_up: Callable[[], bool] | None = None) -> None:
        self.state = STARTING
        self.redis_up = redis_up

    def mark_ready(self) -> None:
        """The process serves: readiness probes pass (unless it is already draining)."""
        if self.state == STARTING:
            self.state = READY
            logger.info("ready")

    def mark_draining(self) -> None:
        """Shutdown has begun: readiness probes fail from now on."""
        if self.state != DRAINING:
            self.state = DRAINING
            logger.info("draining: /readyz answers 503 from now on")

    @property
    def ready(self) -> bool:
        """True while the process should get traffic."""
        return self.state == READY

    def redis_state(self) -> str:
        """``up``, ``down``, or ``none`` when no Redis is in use."""
        if self.redis_up is None:
            return "none"
        try:
            return "up" if self.redis_up() else "down"
        except Exception:  # a probe must answer whatever the store does
            logger.exception("reading the Redis state for a probe failed")
            return "down"

    def body(self) -> dict[str, Any]:
        """What both endpoints answer."""
        return {"status": self.state, "redis": self.redis_state()}


def health_routes(readiness: Readiness) -> list[Route]:
    """``/healthz`` and ``/readyz`` as Starlette routes (GET and HEAD, no authentication)."""
    from starlette.responses import Response
    from starlette.routing import Route

    def answer(status: int) -> Response:
        return Response(
            json.dumps(readiness.body()),
            status_code=status,
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def healthz(request: Any) -> Response:
        return answer(200)

    async def readyz(request: Any) -> Response:
        return answer(200 if readiness.ready else 503)

    return [
        Route("/healthz", healthz, methods=["GET", "HEAD"], name="healthz"),
        Route("/readyz", readyz, methods=["GET", "HEAD"], name="readyz"),
    ]


class HealthEndpoints:
    """ASGI wrapper that answers the health routes itself and passes everything else to ``app``.

    Put it outermost, outside any authentication middleware: probes carry no credentials.
    Lifespan and every other path go to ``app`` unchanged.
    """

    def __init__(self, app: Any, readiness: Readiness) -> None:
        self.app = app
        self.readiness = readiness
        self._routes = {route.path: route for route in health_routes(readiness)}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        route = self._routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
        else:
            await route.handle(scope, receive, send)  # type: ignore[arg-type]


class Metrics:
    """Metrics switched off: every method does nothing (``MCP_METRICS_PORT`` is not set)."""

    enabled = False

    def call_started(self, tool: str) -> None:
        """A call of ``tool`` began."""

    def call_finished(self, tool: str, outcome: str, seconds: float) -> None:
        """A call of ``tool`` ended with ``outcome`` (see ``OUTCOMES``) after ``seconds``."""

    def move_in_flight(self, old: str, new: str) -> None:
        """A running call counted under tool label ``old`` is now counted under ``new``."""

    def watch(
        self,
        *,
        open_pools: Callable[[], float] | None = None,
        redis_up: Callable[[], bool] | None = None,
        queued_writes: Callable[[], float] | None = None,
        audit_dropped: Callable[[], float] | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        """Callbacks read at each scrape (any may be left out)."""

    def serve(self, host: str, port: int) -> None:
        """Start serving ``/metrics``."""

    def close(self) -> None:
        """Stop serving."""


#: Latency buckets (seconds) from a cache hit to a long query.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class PrometheusMetrics(Metrics):
    """Metrics in a registry of their own, served by prometheus_client's HTTP server."""

    enabled = True

    def __init__(self, server: str) -> None:
        import prometheus_client as prom  # only here: a server without metrics never imports it

        self.server = server
        self.registry = prom.CollectorRegistry(auto_describe=True)
        self._calls = prom.Counter(
            "mcp_tool_calls", "Tool calls by tool and outcome.", ["server", "tool", "outcome"], registry=self.registry
        )
        self._latency = prom.Histogram(
            "mcp_tool_call_duration_seconds",
            "Time from the start of a tool call to its result.",
            ["server", "tool"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._in_flight = prom.Gauge(
            "mcp_tool_calls_in_flight", "Tool calls running now.", ["server", "tool"], registry=self.registry
        )
        prom.ProcessCollector(registry=self.registry)
        self._callbacks: dict[str, Callable[[], Any]] = {}
        self.registry.register(_CallbackCollector(self))
        self._http: Any = None
        self._thread: threading.Thread | None = None

    def call_started(self, tool: str) -> None:
        self._in_flight.labels(self.server, tool).inc()

    def move_in_flight(self, old: str, new: str) -> None:
        self._in_flight.labels(self.server, old).dec()
        self._in_flight.labels(self.server, new).inc()

    def call_finished(self, tool: str, outcome: str, seconds: float) -> None:
        self._in_flight.labels(self.server, tool).dec()
        self._calls.labels(self.server, tool, outcome).inc()
        self._latency.labels(self.server, tool).observe(seconds)

    def watch(self, **callbacks: Callable[[], Any] | None) -> None:  # type: ignore[override]
        self._callbacks.update({name: fn for name, fn in callbacks.items() if fn is not None})

    def serve(self, host: str, port: int) -> None:
        import prometheus_client as prom

        self._http, self._thread = prom.start_http_server(port, addr=host, registry=self.registry)
        logger.info("serving Prometheus metrics on http://%s:%d/metrics", host, port)

    def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            http.shutdown()
            http.server_close()

    def read(self, name: str) -> float | None:
        """The value of one callback (None when it has none or it failed)."""
        fn = self._callbacks.get(name)
        if fn is None:
            return None
        try:
            return float(fn())
        except Exception:  # a scrape must not fail because one source did
            logger.exception("metrics callback %s failed", name)
            return None


class _CallbackCollector:
    """Gauges and counters whose values are read from callbacks at scrape time."""

    #: callback → (metric name, help, kind)
    SERIES = (
        ("open_pools", "mcp_open_pools", "Tenant pools / clients open now.", "gauge"),
        ("redis_up", "mcp_redis_up", "1 while the last Redis call succeeded, else 0.", "gauge"),
        ("queued_writes", "mcp_redis_queued_writes", "Tenant writes waiting for Redis to come back.", "gauge"),
        ("audit_dropped", "mcp_audit_records_dropped", "Audit records dropped because the queue was full.", "counter"),
        ("ready", "mcp_ready", "1 while /readyz answers 200, else 0.", "gauge"),
    )

    def __init__(self, metrics: PrometheusMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Any]:
        return []  # values come and go with the callbacks: nothing to check at registration

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for callback, name, documentation, kind in self.SERIES:
            value = self._metrics.read(callback)
            if value is None:
                continue
            family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = family_type(name, documentation, labels=["server"])
            family.add_metric([self._metrics.server], value)
            yield family


def metrics_for(server: str, port: int | None) -> Metrics:
    """Prometheus metrics when ``port`` (``MCP_METRICS_PORT``) is set, else the no-op ``Metrics``."""
    return PrometheusMetrics(server) if port else Metrics()


def outcome_of(record: Mapping[str, Any]) -> str:
    """The ``outcome`` label of a finished call's record (``outcome`` and ``error`` fields)."""
    if record.get("outcome") == "ok":
        return "ok"
    error = record.get("error") or ""
    if error == "InternalError":
        return "internal_error"
    if error in ("AccessDenied", "Unauthorized"):
        return "denied"
    if error in ("CancelledError", "Cancelled"):
        return "cancelled"
    return "error"


class MetricsObserver:
    """Feeds ``Metrics`` from the server core's call observers (``call_started`` / ``call_finished(record)``).

    The tool name of a call is what the client sent, even for a tool that does not exist; used as a
    label as is, every made-up name would add series (memory in this process and in Prometheus,
    without bound), and any caller could flood them. So a name is a label only when it is one of
    ``known_tools`` (``Ops.use_tools``) or, without that list, once a call of it has succeeded (only
    real tools succeed) or while fewer than ``MAX_UNPROVEN_TOOL_LABELS`` other names that look like
    tool names were seen; calls of any other name count under ``other``.

    Thread-safety: ``_lock`` guards ``_proven`` and ``_as_other`` (observers are called from the
    event loop, but nothing here may assume it).
    """

    def __init__(self, metrics: Metrics, known_tools: Iterable[str] | None = None) -> None:
        self.metrics = metrics
        self.known_tools: frozenset[str] | None = frozenset(known_tools) if known_tools is not None else None
        self._proven: set[str] = set()
        self._plausible: set[str] = set()
        self._as_other: dict[str, int] = {}  # calls running now that were counted in flight as "other"
        self._lock = threading.Lock()

    def _is_tool(self, name: str) -> bool:
        if self.known_tools is not None:
            return name in self.known_tools
        return name in self._proven or name in self._plausible

    def call_started(self, tool: str) -> None:
        name = str(tool)
        with self._lock:
            if (
                self.known_tools is None
                and not self._is_tool(name)
                and len(self._plausible) < MAX_UNPROVEN_TOOL_LABELS
                and _TOOL_NAME_RE.fullmatch(name)
            ):
                self._plausible.add(name)
            if not self._is_tool(name):
                self._as_other[name] = self._as_other.get(name, 0) + 1
                name = OTHER_TOOL
        self.metrics.call_started(name)

    def call_finished(self, record: Mapping[str, Any]) -> None:
        seconds = float(record.get("duration_ms") or 0.0) / 1000
        name, outcome = str(record.get("tool")), outcome_of(record)
        with self._lock:
            started_as_other = self._as_other.get(name, 0) > 0
            if started_as_other:
                self._as_other[name] -= 1
                if not self._as_other[name]:
                    del self._as_other[name]
            if outcome == "ok" and self.known_tools is None:
                self._proven.add(name)
            label = name if self._is_tool(name) else OTHER_TOOL
        if started_as_other and label != OTHER_TOOL:
            self.metrics.move_in_flight(OTHER_TOOL, label)  # counted in flight as "other" when it started
        self.metrics.call_finished(label, outcome, seconds)


class Ops:
    """Readiness, probes and metrics of one server process, so the core wires them in a few lines.

    ``store`` and ``manager`` (the tenant store and registry) are read by callbacks only.
    """

    def __init__(self, server: str, settings: Any, *, store: Any = None, manager: Any = None) -> None:
        self.readiness = Readiness(redis_up=(lambda: bool(store.available)) if store is not None else None)
        self.metrics = metrics_for(server, settings.metrics_port)
        self.observer = MetricsObserver(self.metrics)
        self.drain_seconds = float(settings.drain_seconds)
        self._endpoint = (settings.host, settings.metrics_port)
        self.metrics.watch(
            open_pools=manager.open_count if manager is not None else None,
            redis_up=(lambda: bool(store.available)) if store is not None else None,
            queued_writes=(lambda: len(store.pending_ids())) if store is not None else None,
            ready=lambda: self.readiness.ready,
        )

    def use_tools(self, names: Iterable[str]) -> None:
        """The server's tool names: calls of any other name are counted under the label ``other``."""
        self.observer.known_tools = frozenset(names)

    def wrap(self, app: Any) -> HealthEndpoints:
        """``app`` with ``/healthz`` and ``/readyz`` in front (outside its authentication)."""
        return HealthEndpoints(app, self.readiness)

    def start(self) -> None:
        """Serve ``/metrics`` when ``MCP_METRICS_PORT`` is set."""
        host, port = self._endpoint
        if self.metrics.enabled and port:
            self.metrics.serve(host, port)

    async def drain(self) -> None:
        """Shutdown begins: fail readiness at once, then keep serving ``MCP_DRAIN_SECONDS``."""
        self.readiness.mark_draining()
        if self.drain_seconds > 0:
            logger.info("draining for %g s before stopping (MCP_DRAIN_SECONDS)", self.drain_seconds)
            await asyncio.sleep(self.drain_seconds)

    def close(self) -> None:
        """Stop serving metrics."""
        self.metrics.close()
