//! Compiles the ZITADEL proto subset with the vendored `protoc`, so a fresh machine needs no
//! manual step, and adds pbjson serde impls so REST and Connect JSON follow protojson.
//!
//! `zitadel.user.v2beta.UserService` is the v2 service under another package name (ZITADEL
//! serves the same messages on both), so its `.proto` is not kept in the tree: it is written
//! into `OUT_DIR` from the v2 file here, and a new v2 RPC or field reaches v2beta by itself.

use std::path::{Path, PathBuf};

/// The v2 user service, the source of the generated v2beta one.
const USER_V2: &str = "proto/zitadel/user/v2/user_service.proto";
/// Where the v2beta copy goes, relative to a generated include root: the same name it would
/// have under `proto/`, so the descriptor set and the generated code are as if it were there.
const USER_V2BETA: &str = "zitadel/user/v2beta/user_service.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("zitadel_descriptor.bin");
    let generated_root = out_dir.join("proto");
    let user_v2beta = write_user_v2beta(Path::new(USER_V2), &generated_root)?;

    let protos = [
        PathBuf::from("proto/zitadel/v1/object.proto"),
        PathBuf::from("proto/zitadel/object/v2/object.proto"),
        PathBuf::from(USER_V2),
        user_v2beta,
        PathBuf::from("proto/zitadel/management/v1/management.proto"),
        PathBuf::from("proto/zitadel/org/v2/org_service.proto"),
    ];
    println!("cargo:rerun-if-changed=proto");

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
        .compile_with_config(config, &protos, &[PathBuf::from("proto"), generated_root])?;

    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .ignore_unknown_fields()
        .build(&[".zitadel"])?;
    Ok(())
}

/// Writes the v2beta user service under `root` by renaming the package of the v2 one (and
/// the service's name in the header comment), and returns its path. Fails if the v2 file no
/// longer has exactly the lines rewritten here, rather than compile a second v2 package.
fn write_user_v2beta(v2: &Path, root: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let source = std::fs::read_to_string(v2)?;
    let mut packages = 0;
    let rewritten: Vec<String> = source
        .lines()
        .map(|line| {
            if line == "package zitadel.user.v2;" {
                packages += 1;
                "package zitadel.user.v2beta;".to_owned()
            } else if line.starts_with("//") {
                line.replace("zitadel.user.v2.", "zitadel.user.v2beta.")
            } else {
                line.to_owned()
            }
        })
        .collect();
    if packages != 1 {
        return Err(format!(
            "{}: expected one `package zitadel.user.v2;` line, found {packages}",
            v2.display()
        )
        .into());
    }
    let mut text = rewritten.join("\n");
    if source.ends_with('\n') {
        text.push('\n');
    }
    let path = root.join(USER_V2BETA);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, text)?;
    Ok(path)
}
