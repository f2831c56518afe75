//! `grpc.health.v1.Health`: SERVING for the server and each service it hosts, NOT_SERVING
//! while the store's commits fail.

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

pub struct HealthService {
    pub store: std::sync::Arc<dyn sundial_store::Store>,
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        if SERVICES.contains(&service.as_str()) {
            let status = match self.store.healthy() {
                true => ServingStatus::Serving,
                false => ServingStatus::NotServing,
            };
            Ok(Response::new(HealthCheckResponse {
                status: status as i32,
            }))
        } else {
            Err(Status::not_found(format!("unknown service {service}")))
        }
    }
}
