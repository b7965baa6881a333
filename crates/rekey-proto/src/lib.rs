//! The ZITADEL protobuf subset Rekey serves, as prost messages with tonic services and pbjson
//! (protojson-compatible) serde implementations. The `.proto` files live in `proto/`.

#![allow(clippy::all, missing_docs)]

// prost and pbjson spell every path out in full (`::prost::alloc::string::String`, …).
#[allow(unused_qualifications)]
pub mod zitadel {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/zitadel.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/zitadel.v1.serde.rs"));
    }
    pub mod object {
        pub mod v2 {
            include!(concat!(env!("OUT_DIR"), "/zitadel.object.v2.rs"));
            include!(concat!(env!("OUT_DIR"), "/zitadel.object.v2.serde.rs"));
        }
    }
    pub mod user {
        pub mod v2 {
            include!(concat!(env!("OUT_DIR"), "/zitadel.user.v2.rs"));
            include!(concat!(env!("OUT_DIR"), "/zitadel.user.v2.serde.rs"));
        }
        pub mod v2beta {
            include!(concat!(env!("OUT_DIR"), "/zitadel.user.v2beta.rs"));
            include!(concat!(env!("OUT_DIR"), "/zitadel.user.v2beta.serde.rs"));
        }
    }
    pub mod org {
        pub mod v2 {
            include!(concat!(env!("OUT_DIR"), "/zitadel.org.v2.rs"));
            include!(concat!(env!("OUT_DIR"), "/zitadel.org.v2.serde.rs"));
        }
    }
    pub mod management {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/zitadel.management.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/zitadel.management.v1.serde.rs"));
        }
    }
}

/// The compiled `FileDescriptorSet` of the protos above (with their imports): what the API
/// crate reads the served services' methods and the messages' fields from, for its table test
/// and its OpenAPI document.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/zitadel_descriptor.bin"));
