//! `grpc.health.v1.Health`: SERVING for the server and each service it hosts.

use sundial_proto::grpc_types::health::v1::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
};
use sundial_proto::health::health_server::Health;
use tonic::{Request, Response, Status};

const SERVICES: [&str; 4] = [
    "",
    "temporal.api.workflowservice.v1.WorkflowService",
    "temporal.api.operatorservice.v1.OperatorService",
    "grpc.health.v1.Health",
];

pub struct HealthService;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        if SERVICES.contains(&service.as_str()) {
            Ok(Response::new(HealthCheckResponse {
                status: ServingStatus::Serving as i32,
            }))
        } else {
            Err(Status::not_found(format!("unknown service {service}")))
        }
    }
}
