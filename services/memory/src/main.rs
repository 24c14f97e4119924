//! `memgpt-memory`: the memory service binary.

memgpt_server_kit::service_main!("memgpt-memory", memgpt_memory::MemoryConfig, memgpt_memory::serve);
