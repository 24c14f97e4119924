"""Starts the project's real binaries for the Python client tests."""

import json
import os
import subprocess
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN_DIR = os.environ.get("MEMGPT_BIN_DIR", os.path.join(ROOT, "target", "release"))


class Service:
    """A service binary on 127.0.0.1:0; the bound address is read from its JSON log."""

    def __init__(self, binary, args):
        self.proc = subprocess.Popen(
            [os.path.join(BIN_DIR, binary), "--listen", "127.0.0.1:0", "--log-format", "json", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.addr = None
        self.http_addr = None
        found = threading.Event()
        self.http_found = threading.Event()

        def drain():
            for line in self.proc.stderr:
                try:
                    fields = json.loads(line).get("fields", {})
                except ValueError:
                    continue
                if self.addr is None and "addr" in fields:
                    self.addr = fields["addr"]
                    found.set()
                if self.http_addr is None and "http_addr" in fields:
                    self.http_addr = fields["http_addr"]
                    self.http_found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(60):
            self.proc.kill()
            raise RuntimeError(f"{binary} did not log its address")

    def wait_serving(self, timeout=120):
        """Polls the standard health protocol until the overall service is SERVING."""
        channel = grpc.insecure_channel(self.addr)
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout
        while True:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return channel
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.addr} never became SERVING")
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def memory_service(tmp_path):
    service = Service("memgpt-memory", ["--data-dir", str(tmp_path / "memory"), "--dimension", "4"])
    yield service
    service.stop()


@pytest.fixture
def generator_service():
    service = Service("memgpt-generator", ["--shutdown-grace-secs", "60"])
    yield service
    service.stop()
