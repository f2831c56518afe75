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
    write_method_table(&fds, &wanted)?;
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

/// Writes `methods.rs`: one [`Method`] per RPC of the served services, with the field number of
/// the request's top-level `namespace` string and `task_token` bytes (what authorization reads).
fn write_method_table(
    fds: &prost_types::FileDescriptorSet,
    wanted: &[&str],
) -> Result<(), Box<dyn std::error::Error>> {
    use std::fmt::Write;
    let mut messages = std::collections::HashMap::new();
    for file in &fds.file {
        let package = file.package.as_deref().unwrap_or_default();
        for message in &file.message_type {
            let name = message.name.as_deref().unwrap_or_default();
            messages.insert(format!(".{package}.{name}"), message);
        }
    }
    let mut out = String::from("pub const METHODS: &[Method] = &[\n");
    for file in &fds.file {
        let name = file.name.as_deref().unwrap_or_default();
        if !wanted.iter().any(|w| name.ends_with(w)) {
            continue;
        }
        let package = file.package.as_deref().unwrap_or_default();
        for service in &file.service {
            let service_name = service.name.as_deref().unwrap_or_default();
            for method in &service.method {
                let method_name = method.name.as_deref().unwrap_or_default();
                let input = method.input_type.as_deref().unwrap_or_default();
                let message = messages
                    .get(input)
                    .ok_or_else(|| format!("no descriptor for {input}"))?;
                // Field types: 9 = string, 12 = bytes.
                let number = |name: &str, ty: i32| {
                    let n = message
                        .field
                        .iter()
                        .find(|f| f.name.as_deref() == Some(name) && f.r#type == Some(ty))
                        .and_then(|f| f.number);
                    match n {
                        Some(n) => format!("Some({n})"),
                        None => "None".to_string(),
                    }
                };
                let namespace = number("namespace", 9);
                let token = number("task_token", 12);
                writeln!(
                    out,
                    "    Method {{ path: \"/{package}.{service_name}/{method_name}\", name: \"{method_name}\", namespace_field: {namespace}, task_token_field: {token} }},"
                )?;
            }
        }
    }
    out.push_str("];\n");
    let dir = std::env::var("OUT_DIR")?;
    std::fs::write(std::path::Path::new(&dir).join("methods.rs"), out)?;
    Ok(())
}
