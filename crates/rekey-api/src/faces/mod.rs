//! One module per wire face. `zitadel` holds the proto-level adapters every ZITADEL form
//! (REST, and later Connect and gRPC) shares; the form modules only frame and route.

pub mod f5;
pub mod zitadel;
pub mod zitadel_rest;
pub mod zitadel_setup;
