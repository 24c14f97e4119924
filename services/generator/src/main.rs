//! `memgpt-generator`: the generator service binary.

memgpt_server_kit::service_main!("memgpt-generator", memgpt_generator::GeneratorConfig, memgpt_generator::serve);
