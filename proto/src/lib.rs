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

/// The gateway's authentication as a client sends it: `authorization: Bearer <key>`.
pub mod auth {
    use tonic::metadata::errors::InvalidMetadataValue;
    use tonic::metadata::{AsciiMetadataValue, MetadataMap};

    /// Adds `authorization: Bearer <key>` to every call (nothing when there is no key).
    #[derive(Debug, Clone, Default)]
    pub struct Bearer(Option<AsciiMetadataValue>);

    impl Bearer {
        /// The interceptor for `key`; fails when the key holds characters gRPC metadata
        /// cannot carry.
        pub fn new(key: Option<&str>) -> Result<Self, InvalidMetadataValue> {
            Ok(Self(key.map(|k| format!("Bearer {k}").parse()).transpose()?))
        }

        /// Puts the header into `metadata`.
        pub fn apply(&self, metadata: &mut MetadataMap) {
            if let Some(v) = &self.0 {
                metadata.insert("authorization", v.clone());
            }
        }
    }

    impl tonic::service::Interceptor for Bearer {
        fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
            self.apply(req.metadata_mut());
            Ok(req)
        }
    }
}
