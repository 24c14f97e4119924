"""A generic gRPC client (grpcio with server reflection, no generated stubs) calls every RPC of
memgpt.memory.v1.Memory, and the service drains and exits cleanly on SIGTERM."""

import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from reflected import ReflectedClient

SERVICE = "memgpt.memory.v1.Memory"


def test_reflection_lists_and_calls_every_rpc(memory_service):
    channel = memory_service.wait_serving()
    client = ReflectedClient(channel, SERVICE)
    assert SERVICE in client.db.get_services()
    assert "grpc.health.v1.Health" in client.db.get_services()
    assert sorted(client.service.methods_by_name) == sorted(
        ["Upsert", "Search", "Find", "Get", "Delete", "Count", "List", "DropNamespace"]
    )

    records = [
        {"id": "a", "vector": [1, 0, 0, 0], "text": "alpha", "metadata": {"lang": "en"}},
        {"id": "b", "vector": [0, 1, 0, 0], "text": "beta", "metadata": {"lang": "fr"}},
        {"id": "c", "vector": [1, 1, 0, 0], "text": "gamma", "metadata": {"lang": "en"}},
    ]
    assert client.call("Upsert", {"namespace": "py", "records": records, "wait": True}) == {"upserted": "3"}

    hits = client.call("Search", {"namespace": "py", "vector": [1, 0.1, 0, 0], "top_k": 2})["hits"]
    assert [h["id"] for h in hits] == ["a", "c"]
    assert hits[0]["text"] == "alpha" and hits[0]["metadata"] == {"lang": "en"}

    filtered = client.call(
        "Search",
        {"namespace": "py", "vector": [0, 1, 0, 0], "top_k": 5,
         "filter": {"must": [{"key": "lang", "equals": "en"}]}},
    )["hits"]
    assert sorted(h["id"] for h in filtered) == ["a", "c"]

    found = client.call(
        "Find",
        {"namespace": "py", "limit": 10, "filter": {"must": [{"key": "lang", "any_of": {"values": ["en"]}}]}},
    )
    assert [h["id"] for h in found["hits"]] == ["a", "c"] and "truncated" not in found

    got = client.call("Get", {"namespace": "py", "ids": ["b", "missing"]})["records"]
    assert [r["id"] for r in got] == ["b"]

    assert client.call("Count", {"namespace": "py"}) == {"count": "3"}
    page = client.call("List", {"namespace": "py", "page_size": 2})
    assert len(page["records"]) == 2 and page["next_page_token"]
    rest = client.call("List", {"namespace": "py", "page_size": 2, "page_token": page["next_page_token"]})
    assert len(rest["records"]) == 1 and "next_page_token" not in rest

    assert client.call("Delete", {"namespace": "py", "ids": ["a"]}) == {"deleted": "1"}
    assert client.call("DropNamespace", {"namespace": "py"}) == {"deleted": "2"}
    assert client.call("Count", {}) == {}  # proto3 omits a zero count

    # Bad input through the generic client: INVALID_ARGUMENT naming the field.
    try:
        client.call("Search", {"namespace": "py", "vector": [1, 0, 0], "top_k": 1})
        raise AssertionError("a 3-d vector was accepted by a 4-d service")
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "`vector`" in err.details()


def test_sigterm_drains_and_exits_cleanly(memory_service):
    channel = memory_service.wait_serving()
    client = ReflectedClient(channel, SERVICE)
    client.call("Upsert", {"namespace": "t", "records": [{"id": "x", "vector": [1, 2, 3, 4]}]})
    memory_service.proc.send_signal(signal.SIGTERM)
    assert memory_service.proc.wait(timeout=60) == 0
    health = health_pb2_grpc.HealthStub(channel)
    try:
        health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        raise AssertionError("the service still answers after SIGTERM")
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.UNAVAILABLE
