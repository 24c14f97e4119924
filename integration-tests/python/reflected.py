"""A generic gRPC client built from the server's own reflection descriptors (no generated
stubs), shared by the Python tests."""

from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


class ReflectedClient:
    """Builds request and response classes from the server's own descriptors."""

    def __init__(self, channel, service):
        self.channel = channel
        self.name = service
        self.db = ProtoReflectionDescriptorDatabase(channel)
        self.pool = descriptor_pool.DescriptorPool(self.db)
        self.service = self.pool.FindServiceByName(service)

    def call(self, method, body):
        m = self.service.methods_by_name[method]
        request_class = message_factory.GetMessageClass(m.input_type)
        response_class = message_factory.GetMessageClass(m.output_type)
        stub = self.channel.unary_unary(
            f"/{self.name}/{method}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        response = stub(json_format.ParseDict(body, request_class()), timeout=30)
        return json_format.MessageToDict(response, preserving_proto_field_name=True)

    def stream(self, method, body, timeout=120):
        """Calls a server-streaming method; yields each response as a dict."""
        m = self.service.methods_by_name[method]
        request_class = message_factory.GetMessageClass(m.input_type)
        response_class = message_factory.GetMessageClass(m.output_type)
        stub = self.channel.unary_stream(
            f"/{self.name}/{method}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        for response in stub(json_format.ParseDict(body, request_class()), timeout=timeout):
            yield json_format.MessageToDict(response, preserving_proto_field_name=True)
