//! One module per wire face. `zitadel` holds the proto-level operations every ZITADEL form
//! shares; `zitadel_rest`, `connect` and `grpc` (with gRPC-Web) only frame and route.

pub mod connect;
pub mod f5;
pub mod grpc;
pub mod operations_api;
pub mod zitadel;
pub mod zitadel_rest;
pub mod zitadel_setup;
