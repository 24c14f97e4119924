//! The gRPC contracts of the MemGPT cluster: `memgpt.memory.v1`, `memgpt.generator.v1` and
//! `memgpt.gateway.v1`, generated at build time, with the file descriptor set that the servers
//! register for reflection.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

/// Encoded `FileDescriptorSet` of every MemGPT proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/memgpt_descriptor.bin"));

/// Memory service contract.
pub mod memory {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("memgpt.memory.v1");
    }
}

/// Generator service contract.
pub mod generator {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("memgpt.generator.v1");
    }
}

/// Gateway (public API) contract.
pub mod gateway {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("memgpt.gateway.v1");
    }
}

pub mod compat;
