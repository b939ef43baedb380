//! Compiles `proto/` into the `pmdaemon.v1` Rust module and writes the
//! descriptor set that the daemon serves through gRPC reflection. protoc comes
//! from the protoc-bin-vendored crate, so a fresh machine needs no system
//! protoc.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let well_known = well_known.display().to_string();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("pmdaemon_descriptor.bin"))
        .compile_protos(
            &["proto/pmdaemon/v1/process_manager.proto"],
            &["proto", well_known.as_str()],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
