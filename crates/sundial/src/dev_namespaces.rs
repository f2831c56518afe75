//! The namespaces of a development server (`sundial server start-dev` and
//! `sundial-test-server`), which creates them at startup.

/// `default`, then the names in `extra` in the order given, each name once; all keep the
/// server's default retention.
pub fn dev_namespaces(extra: Vec<String>) -> Vec<sundial_server::NamespaceSpec> {
    let mut names = vec!["default".to_string()];
    for name in extra {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
        .into_iter()
        .map(|name| sundial_server::NamespaceSpec {
            name,
            retention_ms: None,
        })
        .collect()
}
