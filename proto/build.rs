//! Generates the gRPC code and a file descriptor set (for reflection) from `memgpt/**/*.proto`.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "memgpt/memory/v1/memory.proto",
    "memgpt/generator/v1/generator.proto",
    "memgpt/gateway/v1/gateway.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc keeps a fresh machine free of manual installs; PROTOC still wins when set.
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded at this point.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // tonic-prost-build does not emit rerun-if-changed for the protos themselves.
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("memgpt_descriptor.bin"))
        .compile_protos(PROTOS, &["."])?;
    Ok(())
}
