//! `memgpt-gateway`: the gateway binary.

memgpt_server_kit::service_main!("memgpt-gateway", memgpt_gateway::GatewayConfig, memgpt_gateway::serve);
