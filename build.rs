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
    let descriptor_path = out_dir.join("pmdaemon_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .compile_protos(
            &["proto/pmdaemon/v1/process_manager.proto"],
            &["proto", well_known.as_str()],
        )?;
    strip_to_reflection_set(&descriptor_path)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

/// Rewrites the descriptor set into what the daemon serves through gRPC
/// reflection and keeps decoded for its whole life: our own file only (the
/// imported google/api and google/protobuf files are dropped),
/// without the `google.api.http` method options and the import that defines
/// them (which pulls in google/protobuf/descriptor.proto, most of the idle
/// heap). Generic gRPC clients need neither; tools that map HTTP routes
/// read the annotations from `proto/`. Our comments stay, so `grpcurl
/// describe` shows them.
fn strip_to_reflection_set(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    use prost::Message;
    let mut set = prost_types::FileDescriptorSet::decode(std::fs::read(path)?.as_slice())?;
    set.file.retain(|f| f.name().starts_with("pmdaemon/"));
    for file in &mut set.file {
        file.dependency
            .retain(|d| d != "google/api/annotations.proto");
        for service in &mut file.service {
            for method in &mut service.method {
                method.options = None;
            }
        }
    }
    std::fs::write(path, set.encode_to_vec())?;
    Ok(())
}
