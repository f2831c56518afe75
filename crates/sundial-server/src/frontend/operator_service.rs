//! `temporal.api.operatorservice.v1.OperatorService`. Search attributes and the rest come with
//! the visibility work; until then every RPC answers Unimplemented through the default stubs.

use sundial_proto::operatorservice::operator_service_server::OperatorService;

pub struct Operator;

#[tonic::async_trait]
impl OperatorService for Operator {}
