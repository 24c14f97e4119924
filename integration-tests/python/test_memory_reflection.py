"""A generic gRPC client (grpcio with server reflection, no generated stubs) calls every RPC of
memgpt.memory.v1.Memory, and the service drains and exits cleanly on SIGTERM."""

import signal

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "memgpt.memory.v1.Memory"


class ReflectedClient:
    """Builds request and response classes from the server's own descriptors."""

    def __init__(self, channel):
        self.channel = channel
        self.db = ProtoReflectionDescriptorDatabase(channel)
        self.pool = descriptor_pool.DescriptorPool(self.db)
        self.service = self.pool.FindServiceByName(SERVICE)

    def call(self, method, body):
        m = self.service.methods_by_name[method]
        request_class = message_factory.GetMessageClass(m.input_type)
        response_class = message_factory.GetMessageClass(m.output_type)
        stub = self.channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        response = stub(json_format.ParseDict(body, request_class()), timeout=30)
        return json_format.MessageToDict(response, preserving_proto_field_name=True)


def test_reflection_lists_and_calls_every_rpc(memory_service):
    channel = memory_service.wait_serving()
    client = ReflectedClient(channel)
    assert SERVICE in client.db.get_services()
    assert "grpc.health.v1.Health" in client.db.get_services()
    assert sorted(client.service.methods_by_name) == sorted(
        ["Upsert", "Search", "Get", "Delete", "Count", "List", "DropNamespace"]
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
    client = ReflectedClient(channel)
    client.call("Upsert", {"namespace": "t", "records": [{"id": "x", "vector": [1, 2, 3, 4]}]})
    memory_service.proc.send_signal(signal.SIGTERM)
    assert memory_service.proc.wait(timeout=60) == 0
    health = health_pb2_grpc.HealthStub(channel)
    try:
        health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        raise AssertionError("the service still answers after SIGTERM")
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.UNAVAILABLE
