//! Matching HTTP requests to RPCs by the `google.api.http` bindings of the API
//! ([`sundial_proto::HTTP_ROUTES`], generated from the descriptors).
//!
//! A template is a list of `/`-separated segments, each a literal or a `{field.path}` variable
//! that binds one whole segment. A request path matches a template with as many segments whose
//! literals agree; when several do, the one with the most literals wins (so
//! `/workflows/{id}/history` is never taken for a variable). A path that some template matches
//! with another method is "method not allowed", as the reference answers.

use sundial_proto::HttpRoute;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// The request field the segment fills, as a path of proto field names.
    Field(Vec<String>),
}

#[derive(Debug)]
struct Compiled {
    route: &'static HttpRoute,
    segments: Vec<Segment>,
    literals: usize,
}

/// A request field set from the path: the field path and the segment's decoded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub field: Vec<String>,
    pub value: String,
}

/// What a request's method and path lead to.
#[derive(Debug, PartialEq, Eq)]
pub enum Match {
    Found {
        route: &'static HttpRoute,
        bindings: Vec<Binding>,
    },
    MethodNotAllowed,
    NotFound,
}

/// Every route of the served services.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Compiled>,
}

/// Parses a template such as `/api/v1/namespaces/{namespace}/workflows/{execution.workflow_id}`.
fn compile(template: &str) -> Result<Vec<Segment>, String> {
    let rest = template
        .strip_prefix('/')
        .ok_or_else(|| format!("template {template:?} does not start with '/'"))?;
    rest.split('/')
        .map(|segment| {
            if let Some(inner) = segment.strip_prefix('{') {
                let field = inner
                    .strip_suffix('}')
                    .ok_or_else(|| format!("template {template:?}: unclosed variable"))?;
                let path: Vec<String> = field.split('.').map(str::to_string).collect();
                let plain = |p: &String| {
                    !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                };
                if !path.iter().all(plain) {
                    return Err(format!(
                        "template {template:?}: variable {field:?} is not a field path"
                    ));
                }
                Ok(Segment::Field(path))
            } else if segment.is_empty() || segment.contains(['{', '}', ':', '*']) {
                Err(format!(
                    "template {template:?}: segment {segment:?} is not supported"
                ))
            } else {
                Ok(Segment::Literal(segment.to_string()))
            }
        })
        .collect()
}

/// Decodes `%XX` escapes of one path segment; `None` when an escape is malformed or the result
/// is not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Router {
    /// The router over `routes`; fails on a template it cannot read (a test checks that every
    /// generated route compiles).
    pub fn new(routes: &'static [HttpRoute]) -> Result<Router, String> {
        let routes = routes
            .iter()
            .map(|route| {
                let segments = compile(route.template)?;
                let literals = segments
                    .iter()
                    .filter(|s| matches!(s, Segment::Literal(_)))
                    .count();
                Ok(Compiled {
                    route,
                    segments,
                    literals,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Router { routes })
    }

    /// The route for `method` and `path` (the URI's path, still percent-encoded).
    pub fn find(&self, method: &str, path: &str) -> Match {
        let Some(rest) = path.strip_prefix('/') else {
            return Match::NotFound;
        };
        let raw: Vec<&str> = rest.split('/').collect();
        let mut best: Option<&Compiled> = None;
        let mut path_known = false;
        for compiled in &self.routes {
            if compiled.segments.len() != raw.len() {
                continue;
            }
            let fits = compiled.segments.iter().zip(&raw).all(|(s, r)| match s {
                Segment::Literal(l) => l == r,
                Segment::Field(_) => !r.is_empty(),
            });
            if !fits {
                continue;
            }
            path_known = true;
            if compiled.route.method == method
                && best.is_none_or(|b| compiled.literals > b.literals)
            {
                best = Some(compiled);
            }
        }
        let Some(compiled) = best else {
            return if path_known {
                Match::MethodNotAllowed
            } else {
                Match::NotFound
            };
        };
        let mut bindings = Vec::new();
        for (segment, raw) in compiled.segments.iter().zip(&raw) {
            if let Segment::Field(field) = segment {
                let Some(value) = percent_decode(raw) else {
                    return Match::NotFound;
                };
                bindings.push(Binding {
                    field: field.clone(),
                    value,
                });
            }
        }
        Match::Found {
            route: compiled.route,
            bindings,
        }
    }

    /// Every route, for listings.
    pub fn routes(&self) -> impl Iterator<Item = &'static HttpRoute> + '_ {
        self.routes.iter().map(|c| c.route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new(sundial_proto::HTTP_ROUTES).expect("every generated template compiles")
    }

    fn grpc_method(m: &Match) -> Option<&'static str> {
        match m {
            Match::Found { route, .. } => route.grpc_path.rsplit('/').next(),
            _ => None,
        }
    }

    #[test]
    fn every_route_compiles_and_the_served_rpcs_have_routes() {
        let router = router();
        assert!(router.routes().count() > 100);
        for name in [
            "StartWorkflowExecution",
            "SignalWorkflowExecution",
            "QueryWorkflow",
            "UpdateWorkflowExecution",
            "DescribeWorkflowExecution",
            "ListWorkflowExecutions",
            "GetWorkflowExecutionHistory",
            "TerminateWorkflowExecution",
            "CreateSchedule",
            "ListSearchAttributes",
        ] {
            assert!(
                router
                    .routes()
                    .any(|r| r.grpc_path.ends_with(&format!("/{name}"))),
                "{name} has no HTTP route"
            );
        }
    }

    #[test]
    fn literals_win_over_variables_and_bindings_are_decoded() {
        let router = router();
        let found = router.find(
            "GET",
            "/api/v1/namespaces/default/workflows/a%2Fb%20c/history",
        );
        assert_eq!(grpc_method(&found), Some("GetWorkflowExecutionHistory"));
        let Match::Found { bindings, route } = found else {
            unreachable!()
        };
        assert_eq!(route.body, "");
        assert_eq!(
            bindings,
            vec![
                Binding {
                    field: vec!["namespace".into()],
                    value: "default".into()
                },
                Binding {
                    field: vec!["execution".into(), "workflow_id".into()],
                    value: "a/b c".into()
                },
            ]
        );
        let describe = router.find("GET", "/api/v1/namespaces/default/workflows/wf");
        assert_eq!(grpc_method(&describe), Some("DescribeWorkflowExecution"));
        let start = router.find("POST", "/api/v1/namespaces/default/workflows/wf");
        assert_eq!(grpc_method(&start), Some("StartWorkflowExecution"));
        // The bindings without the /api/v1 prefix are served too, as by the reference.
        let list = router.find("GET", "/namespaces/default/workflows");
        assert_eq!(grpc_method(&list), Some("ListWorkflowExecutions"));
    }

    #[test]
    fn unknown_paths_and_methods() {
        let router = router();
        assert_eq!(router.find("GET", "/api/v1/nope"), Match::NotFound);
        assert_eq!(router.find("GET", "nope"), Match::NotFound);
        assert_eq!(
            router.find("GET", "/api/v1/namespaces/default/workflows//history"),
            Match::NotFound
        );
        assert_eq!(
            router.find("PUT", "/api/v1/namespaces/default/workflows/wf"),
            Match::MethodNotAllowed
        );
        assert_eq!(
            router.find("GET", "/api/v1/namespaces/default/workflows/%zz/history"),
            Match::NotFound
        );
    }

    #[test]
    fn templates_outside_the_subset_are_refused() {
        assert!(compile("/a/{b=**}").is_err());
        assert!(compile("/a/b:verb").is_err());
        assert!(compile("a").is_err());
        assert!(compile("/a/{b").is_err());
        assert_eq!(
            compile("/a/{b.c_d}").unwrap(),
            vec![
                Segment::Literal("a".into()),
                Segment::Field(vec!["b".into(), "c_d".into()])
            ]
        );
    }
}
