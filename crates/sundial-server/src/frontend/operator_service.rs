//! `temporal.api.operatorservice.v1.OperatorService`: custom search attributes. Other RPCs
//! answer Unimplemented through the default stubs.

use crate::namespaces::Namespaces;
use crate::visibility::{SYSTEM_ATTRIBUTES, SearchAttributes};
use std::sync::Arc;
use sundial_engine::api::operatorservice::v1::*;
use sundial_proto::operatorservice::operator_service_server::OperatorService;
use tonic::{Request, Response, Status};

pub struct Operator {
    pub namespaces: Arc<Namespaces>,
    pub search_attributes: Arc<SearchAttributes>,
}

#[tonic::async_trait]
impl OperatorService for Operator {
    async fn add_search_attributes(
        &self,
        request: Request<AddSearchAttributesRequest>,
    ) -> Result<Response<AddSearchAttributesResponse>, Status> {
        let req = request.into_inner();
        self.namespaces.check(&req.namespace)?;
        self.search_attributes
            .add(&req.namespace, &req.search_attributes)
            .await?;
        Ok(Response::new(AddSearchAttributesResponse {}))
    }

    async fn remove_search_attributes(
        &self,
        request: Request<RemoveSearchAttributesRequest>,
    ) -> Result<Response<RemoveSearchAttributesResponse>, Status> {
        let req = request.into_inner();
        self.namespaces.check(&req.namespace)?;
        self.search_attributes
            .remove(&req.namespace, &req.search_attributes)
            .await?;
        Ok(Response::new(RemoveSearchAttributesResponse {}))
    }

    async fn list_search_attributes(
        &self,
        request: Request<ListSearchAttributesRequest>,
    ) -> Result<Response<ListSearchAttributesResponse>, Status> {
        let req = request.into_inner();
        self.namespaces.check(&req.namespace)?;
        Ok(Response::new(ListSearchAttributesResponse {
            custom_attributes: self
                .search_attributes
                .custom(&req.namespace)
                .into_iter()
                .collect(),
            system_attributes: SYSTEM_ATTRIBUTES
                .iter()
                .map(|(n, t)| (n.to_string(), *t as i32))
                .collect(),
            storage_schema: Default::default(),
        }))
    }
}
