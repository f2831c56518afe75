//! Server-side gRPC stubs for the Temporal API, plus a re-export of the message types.
//!
//! Every RPC that Sundial does not implement answers `Unimplemented` through the default stubs.
#![allow(clippy::all, missing_docs)]

pub use temporalio_protos::{google, grpc as grpc_types, temporal};

pub mod json_payload;

/// `temporal.api.workflowservice.v1.WorkflowService` server trait.
pub mod workflowservice {
    tonic::include_proto!("temporal.api.workflowservice.v1");
}

/// `temporal.api.operatorservice.v1.OperatorService` server trait.
pub mod operatorservice {
    tonic::include_proto!("temporal.api.operatorservice.v1");
}

/// `temporal.api.testservice.v1.TestService` server trait (served by the time-skipping test
/// server only).
pub mod testservice {
    tonic::include_proto!("temporal.api.testservice.v1");
}

/// `grpc.health.v1.Health` server trait.
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}

/// One RPC of a served service, as generated from the descriptors.
///
/// Invariant: `METHODS` lists every RPC of `WorkflowService`, `OperatorService` and `Health`,
/// so a table keyed on it (authorization, metrics) cannot miss one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    /// The gRPC path, `/package.Service/Method`.
    pub path: &'static str,
    /// The method name, e.g. `StartWorkflowExecution`.
    pub name: &'static str,
    /// Field number of the request's top-level `namespace` string, if it has one.
    pub namespace_field: Option<u32>,
    /// Field number of the request's top-level `task_token` bytes, if it has one.
    pub task_token_field: Option<u32>,
}

include!(concat!(env!("OUT_DIR"), "/methods.rs"));

/// One HTTP binding of an RPC (a `google.api.http` rule or one of its additional bindings), as
/// generated from the descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpRoute {
    /// `GET`, `POST`, `PUT`, `DELETE` or `PATCH`.
    pub method: &'static str,
    /// The path template, e.g. `/api/v1/namespaces/{namespace}/workflows/{workflow_id}`.
    pub template: &'static str,
    /// Which request field the body fills: `*` (all but the path's), a field name, or empty
    /// (no body; the query string fills the rest).
    pub body: &'static str,
    /// The gRPC path of the RPC, `/package.Service/Method`.
    pub grpc_path: &'static str,
    /// Full name of the request message.
    pub input: &'static str,
    /// Full name of the response message.
    pub output: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/http_routes.rs"));

/// The encoded `FileDescriptorSet` of the whole API (messages of every package), for codecs
/// that work from descriptors (the HTTP API's JSON).
pub static DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
