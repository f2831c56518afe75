//! Server-side gRPC stubs for the Temporal API, plus a re-export of the message types.
//!
//! Every RPC that Sundial does not implement answers `Unimplemented` through the default stubs.
#![allow(clippy::all, missing_docs)]

pub use temporalio_protos::{google, grpc as grpc_types, temporal};

/// `temporal.api.workflowservice.v1.WorkflowService` server trait.
pub mod workflowservice {
    tonic::include_proto!("temporal.api.workflowservice.v1");
}

/// `temporal.api.operatorservice.v1.OperatorService` server trait.
pub mod operatorservice {
    tonic::include_proto!("temporal.api.operatorservice.v1");
}

/// `grpc.health.v1.Health` server trait.
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}
