//! Generates tonic server traits for the services Sundial serves, from the descriptor set that
//! `temporalio-protos` exports (its `links` key makes it visible as
//! `DEP_TEMPORALIO_PROTOS_DESCRIPTOR_PATH`). Message types are not regenerated: every message is
//! mapped onto the type `temporalio-protos` already defines.
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::var("DEP_TEMPORALIO_PROTOS_DESCRIPTOR_PATH")
        .map_err(|_| "temporalio-protos did not export its descriptor path")?;
    println!("cargo:rerun-if-changed={path}");
    let bytes = std::fs::read(&path)?;
    let mut fds = prost_types::FileDescriptorSet::decode(bytes.as_slice())?;
    let wanted = [
        "temporal/api/workflowservice/v1/service.proto",
        "temporal/api/operatorservice/v1/service.proto",
        "health/v1/health.proto",
    ];
    // Only the service definitions need stubs; drop services of every other file so that
    // no client or server code is generated for them.
    for file in &mut fds.file {
        let name = file.name.as_deref().unwrap_or_default();
        if !wanted.iter().any(|w| name.ends_with(w)) {
            file.service.clear();
        }
    }
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .generate_default_stubs(true)
        .extern_path(".temporal", "::temporalio_protos::temporal")
        .extern_path(".google.rpc", "::temporalio_protos::google::rpc")
        .extern_path(".grpc", "::temporalio_protos::grpc")
        .extern_path(".coresdk", "::temporalio_protos::coresdk")
        .extern_path(".google.api", "::temporalio_protos::google::api")
        .compile_fds(fds)?;
    Ok(())
}
