//! The gRPC API: generated code and the mapping of errors to statuses.

pub mod status;

/// The generated messages, clients and servers of `proto/foreman/v1/*.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("foreman.v1");
}
