//! Generates tonic server traits for the services Sundial serves, from the descriptor set that
//! `temporalio-protos` exports (its `links` key makes it visible as
//! `DEP_TEMPORALIO_PROTOS_DESCRIPTOR_PATH`). Message types are not regenerated: every message is
//! mapped onto the type `temporalio-protos` already defines.
use prost::Message;

/// The service file of the time-skipping test server's `TestService`.
const TEST_SERVICE: &str = "temporal/api/testservice/v1/service.proto";

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
    write_http_routes(&fds, &wanted)?;
    // The whole set, for the HTTP API's JSON codec (message descriptors at run time).
    let out = std::env::var("OUT_DIR")?;
    std::fs::write(std::path::Path::new(&out).join("descriptors.bin"), &bytes)?;
    // Only the service definitions need stubs; drop services of every other file so that
    // no client or server code is generated for them. The test server's TestService gets a
    // stub too, but stays out of the method table and HTTP routes (the production frontend
    // does not serve it).
    let stubs = [TEST_SERVICE];
    for file in &mut fds.file {
        let name = file.name.as_deref().unwrap_or_default();
        if !wanted.iter().chain(&stubs).any(|w| name.ends_with(w)) {
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

/// Where the `.proto` sources of `temporalio-protos` are: `SUNDIAL_TEMPORAL_PROTOS` when set,
/// else the `protos` folder beside that package's manifest, as `cargo metadata` (offline, from
/// the lock file) names it.
fn temporal_protos_dir() -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=SUNDIAL_TEMPORAL_PROTOS");
    if let Ok(dir) = std::env::var("SUNDIAL_TEMPORAL_PROTOS") {
        return Ok(dir.into());
    }
    let cargo = std::env::var("CARGO")?;
    let target = std::env::var("TARGET")?;
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(&target)
        .current_dir(std::env::var("CARGO_MANIFEST_DIR")?)
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed (set SUNDIAL_TEMPORAL_PROTOS to the protos folder of temporalio-protos): {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "temporalio-protos")
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or("cargo metadata lists no temporalio-protos")?;
    let dir = std::path::Path::new(manifest)
        .parent()
        .ok_or("temporalio-protos has no manifest folder")?
        .join("protos");
    Ok(dir)
}

/// Writes `http_routes.rs`: one [`HttpRoute`] per `google.api.http` binding (the rule and its
/// additional bindings) of every RPC of the served services, in declaration order.
///
/// The descriptor set that `temporalio-protos` exports has lost the methods' options (prost's
/// `MethodOptions` keeps no extensions), so the service files are compiled again here from the
/// same sources, with protox, whose descriptor pool keeps them. Every RPC of the exported set
/// must be found again, so sources from another version fail the build.
fn write_http_routes(
    exported: &prost_types::FileDescriptorSet,
    wanted: &[&str],
) -> Result<(), Box<dyn std::error::Error>> {
    use prost_reflect::{DynamicMessage, Value};
    use std::fmt::Write;
    let protos = temporal_protos_dir()?;
    let include = protos.join("api_upstream");
    println!("cargo:rerun-if-changed={}", include.display());
    let files = [
        "temporal/api/workflowservice/v1/service.proto",
        "temporal/api/operatorservice/v1/service.proto",
    ];
    let pool = protox::Compiler::new([&include])?
        .include_imports(true)
        .open_files(files)
        .map_err(|e| format!("compiling {}: {e}", include.display()))?
        .descriptor_pool();
    let http = pool
        .get_extension_by_name("google.api.http")
        .ok_or("the service files define no google.api.http extension")?;
    for file in &exported.file {
        let name = file.name.as_deref().unwrap_or_default();
        if !files.iter().any(|f| name.ends_with(f)) {
            continue;
        }
        let package = file.package.as_deref().unwrap_or_default();
        for service in &file.service {
            for method in &service.method {
                let full = format!("{package}.{}", service.name.as_deref().unwrap_or_default());
                let found = pool.get_service_by_name(&full).is_some_and(|s| {
                    s.methods()
                        .any(|m| Some(m.name()) == method.name.as_deref())
                });
                if !found {
                    return Err(format!(
                        "{}: {full}/{} is missing; the sources are not those of the exported descriptors",
                        include.display(),
                        method.name.as_deref().unwrap_or_default()
                    )
                    .into());
                }
            }
        }
    }
    let text = |rule: &DynamicMessage, name: &str| -> String {
        match rule.get_field_by_name(name).as_deref() {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        }
    };
    let mut out = String::from("pub const HTTP_ROUTES: &[HttpRoute] = &[\n");
    for file in pool.files() {
        if !wanted.iter().any(|w| file.name().ends_with(w)) {
            continue;
        }
        for service in file.services() {
            for method in service.methods() {
                let options = method.options();
                if !options.has_extension(&http) {
                    continue;
                }
                let Value::Message(rule) = options.get_extension(&http).into_owned() else {
                    return Err(format!(
                        "{}: google.api.http is not a message",
                        method.full_name()
                    )
                    .into());
                };
                let mut rules = vec![rule.clone()];
                if let Some(Value::List(extra)) =
                    rule.get_field_by_name("additional_bindings").as_deref()
                {
                    rules.extend(extra.iter().filter_map(|v| v.as_message().cloned()));
                }
                for rule in rules {
                    let Some((verb, template)) = ["get", "put", "post", "delete", "patch"]
                        .iter()
                        .map(|verb| (verb.to_uppercase(), text(&rule, verb)))
                        .find(|(_, t)| !t.is_empty())
                    else {
                        return Err(
                            format!("{}: an HTTP rule without a verb", method.full_name()).into(),
                        );
                    };
                    writeln!(
                        out,
                        "    HttpRoute {{ method: {verb:?}, template: {template:?}, body: {:?}, grpc_path: \"/{}/{}\", input: {:?}, output: {:?} }},",
                        text(&rule, "body"),
                        service.full_name(),
                        method.name(),
                        method.input().full_name(),
                        method.output().full_name(),
                    )?;
                }
            }
        }
    }
    out.push_str("];\n");
    let dir = std::env::var("OUT_DIR")?;
    std::fs::write(std::path::Path::new(&dir).join("http_routes.rs"), out)?;
    Ok(())
}
