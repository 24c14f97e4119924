"""memgpt.generator.v1.Generator through a reflection client: Info, a streamed Generate, and
SIGTERM: in-flight streams finish, new calls are refused, the process exits 0."""

import signal

import grpc
import pytest
from reflected import ReflectedClient

SERVICE = "memgpt.generator.v1.Generator"


def test_info_and_streamed_generation(generator_service):
    client = ReflectedClient(generator_service.wait_serving(), SERVICE)
    assert sorted(client.service.methods_by_name) == ["Generate", "Info", "WarmMemories"]
    info = client.call("Info", {})
    assert info["device"] == "cpu" and info["dtype"] == "f32"
    assert int(info["context_length"]) >= 2048
    messages = list(client.stream("Generate", {"prompt": "Name a fruit.", "params": {"max_new_tokens": 12, "temperature": 0}}))
    final = messages[-1]["final"]
    assert all("final" not in m for m in messages[:-1])
    assert "".join(m.get("delta", "") for m in messages) == final["text"]
    assert final["finish_reason"] in ("FINISH_REASON_LENGTH", "FINISH_REASON_EOS")
    assert int(final["usage"]["completion_tokens"]) >= 1


def test_sigterm_finishes_in_flight_streams_then_exits(generator_service):
    client = ReflectedClient(generator_service.wait_serving(), SERVICE)
    body = {"prompt": "Write a long story about a lighthouse keeper.", "params": {"max_new_tokens": 64, "temperature": 0}}
    stream = client.stream("Generate", body)
    first = next(stream)
    assert "final" not in first
    generator_service.proc.send_signal(signal.SIGTERM)
    rest = list(stream)
    final = rest[-1]["final"]
    assert final["finish_reason"] in ("FINISH_REASON_LENGTH", "FINISH_REASON_EOS")
    assert first.get("delta", "") + "".join(m.get("delta", "") for m in rest) == final["text"]
    assert generator_service.proc.wait(timeout=60) == 0
    with pytest.raises(grpc.RpcError):
        client.call("Info", {})
