//! Gives this crate's test binaries an rpath to libtorch (LIBTORCH comes from
//! .cargo/config.toml), so they run without LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", std::path::Path::new(&libtorch).join("lib").display());
    }
}
