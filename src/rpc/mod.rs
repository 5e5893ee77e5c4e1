//! The generated gRPC API.
pub mod pb {
    tonic::include_proto!("foreman.v1");
}
