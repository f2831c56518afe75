//! `temporal.api.operatorservice.v1.OperatorService`: custom search attributes and the Nexus
//! endpoint registry ([`crate::nexus_endpoints`]). Other RPCs answer Unimplemented through the
//! default stubs.

use crate::namespaces::Namespaces;
use crate::nexus_endpoints::NexusEndpoints;
use crate::visibility::{SYSTEM_ATTRIBUTES, SearchAttributes};
use std::sync::Arc;
use sundial_engine::api::operatorservice::v1::*;
use sundial_proto::operatorservice::operator_service_server::OperatorService;
use tonic::{Request, Response, Status};

pub struct Operator {
    pub namespaces: Arc<Namespaces>,
    pub search_attributes: Arc<SearchAttributes>,
    pub nexus_endpoints: Arc<NexusEndpoints>,
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

    async fn create_nexus_endpoint(
        &self,
        request: Request<CreateNexusEndpointRequest>,
    ) -> Result<Response<CreateNexusEndpointResponse>, Status> {
        let endpoint = self.nexus_endpoints.create(request.into_inner()).await?;
        Ok(Response::new(CreateNexusEndpointResponse {
            endpoint: Some(endpoint),
        }))
    }

    async fn update_nexus_endpoint(
        &self,
        request: Request<UpdateNexusEndpointRequest>,
    ) -> Result<Response<UpdateNexusEndpointResponse>, Status> {
        let endpoint = self.nexus_endpoints.update(request.into_inner()).await?;
        Ok(Response::new(UpdateNexusEndpointResponse {
            endpoint: Some(endpoint),
        }))
    }

    async fn delete_nexus_endpoint(
        &self,
        request: Request<DeleteNexusEndpointRequest>,
    ) -> Result<Response<DeleteNexusEndpointResponse>, Status> {
        self.nexus_endpoints.delete(request.into_inner()).await?;
        Ok(Response::new(DeleteNexusEndpointResponse {}))
    }

    async fn get_nexus_endpoint(
        &self,
        request: Request<GetNexusEndpointRequest>,
    ) -> Result<Response<GetNexusEndpointResponse>, Status> {
        let endpoint = self.nexus_endpoints.get(request.get_ref())?;
        Ok(Response::new(GetNexusEndpointResponse {
            endpoint: Some(endpoint),
        }))
    }

    async fn list_nexus_endpoints(
        &self,
        request: Request<ListNexusEndpointsRequest>,
    ) -> Result<Response<ListNexusEndpointsResponse>, Status> {
        Ok(Response::new(self.nexus_endpoints.list(request.get_ref())?))
    }
}
