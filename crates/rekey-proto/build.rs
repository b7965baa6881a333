//! Compiles the ZITADEL proto subset with the vendored `protoc`, so a fresh machine needs no
//! manual step, and adds pbjson serde impls so REST and Connect JSON follow protojson.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("zitadel_descriptor.bin");
    let protos = [
        "proto/zitadel/v1/object.proto",
        "proto/zitadel/object/v2/object.proto",
        "proto/zitadel/user/v2/user_service.proto",
        "proto/zitadel/user/v2beta/user_service.proto",
        "proto/zitadel/management/v1/management.proto",
        "proto/zitadel/org/v2/org_service.proto",
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.protoc_arg(format!(
        "--proto_path={}",
        protoc_bin_vendored::include_path()?.display()
    ));

    tonic_prost_build::configure()
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .file_descriptor_set_path(&descriptor_path)
        .compile_with_config(config, &protos, &["proto"])?;

    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .ignore_unknown_fields()
        .build(&[".zitadel"])?;
    Ok(())
}
