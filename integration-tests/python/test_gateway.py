"""The public Gateway API through stubs that grpcio-tools generates from the project's protos
(a client the project did not write): standard health, Remember, Ask and AskStream, and an
error status, against the real memory, generator and gateway binaries."""

import importlib
import os
import sys

import grpc
import pytest
from conftest import ROOT, Service
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_tools import protoc


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    out = tmp_path_factory.mktemp("stubs")
    proto_dir = os.path.join(ROOT, "proto")
    files = [os.path.join("memgpt", s, "v1", f"{s}.proto") for s in ("memory", "generator", "gateway")]
    args = ["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}", *files]
    assert protoc.main(args) == 0, "grpcio-tools could not compile the protos"
    sys.path.insert(0, str(out))
    try:
        yield (importlib.import_module("memgpt.gateway.v1.gateway_pb2"), importlib.import_module("memgpt.gateway.v1.gateway_pb2_grpc"),
               importlib.import_module("memgpt.generator.v1.generator_pb2"))
    finally:
        sys.path.remove(str(out))


@pytest.fixture
def gateway(tmp_path):
    memory = Service("memgpt-memory", ["--data-dir", str(tmp_path / "memory")])
    generator = Service("memgpt-generator", ["--threads", "1"])
    gw = Service("memgpt-gateway", ["--no-auth", "--memory", f"http://{memory.addr}", "--generator", f"http://{generator.addr}",
                                    "--encoder-threads", "1"])
    try:
        yield gw
    finally:
        for s in (gw, generator, memory):
            s.stop()


def test_health_remember_ask_and_ask_stream(stubs, gateway):
    pb, pb_grpc, gen = stubs
    channel = gateway.wait_serving()
    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="memgpt.gateway.v1.Gateway"), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING

    client = pb_grpc.GatewayStub(channel)
    doc = pb.Document(id="tower", text="The clock tower of Linford was built in 1888 and has 212 steps.")
    remembered = client.Remember(pb.RememberRequest(namespace="py", documents=[doc]), timeout=60)
    assert remembered.results[0].status == pb.DOCUMENT_STATUS_STORED

    params = gen.SamplingParams(max_new_tokens=24, temperature=0.0)
    request = pb.AskRequest(question="How many steps does the clock tower have?", namespaces=["py"], top_k=1, params=params)
    answer = client.Ask(request, timeout=120)
    assert "212" in answer.answer
    assert answer.citations[0].document_id == "tower" and answer.citations[0].score > 0.3
    assert len(answer.trace_id) == 32

    messages = list(client.AskStream(request, timeout=120))
    final = messages[-1].final
    assert "".join(m.delta for m in messages) == final.answer
    assert final.answer == answer.answer, "greedy: the stream gives the same answer"

    with pytest.raises(grpc.RpcError) as bad:
        client.Ask(pb.AskRequest(question="", namespaces=["py"]), timeout=30)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "question" in bad.value.details()
