//! The one table of operations. Each ZITADEL entry names its proto service and method, its
//! REST verb and path (grpc-gateway style) and the operation; REST routing
//! (`faces::zitadel_rest`), Connect dispatch (`faces::connect`), gRPC and gRPC-Web dispatch
//! (`faces::grpc`) and the OpenAPI document (`openapi`) are all read from it, so a route cannot
//! be served undocumented nor documented unserved. The F5 and operations routes, which have no
//! proto, are the sibling table [`HTTP_ROUTES`].
//!
//! Adding a ZITADEL RPC: the proto, the operation in `faces::zitadel*`, one line in [`ZITADEL`].

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::Method;
use prost::Message;
use rekey_core::Error;

use crate::faces::zitadel::RequestMeta;
use crate::faces::{f5, grpc, operations_api, zitadel, zitadel_setup};
use crate::{json, ops, AppState};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// An encoded answer, or the error to frame.
pub type Encoded = BoxFuture<Result<Vec<u8>, Error>>;
/// REST path parameters: (proto field name, value).
pub type PathParams = Vec<(String, String)>;

/// One operation in the three encodings the faces speak. The message types come from the
/// operation's signature (see [`handler!`]).
#[derive(Clone, Copy)]
pub struct Handler {
    /// protojson body (path parameters merged in, the path winning) → protojson answer; REST
    /// and Connect JSON.
    pub json: fn(AppState, RequestMeta, Bytes, PathParams) -> Encoded,
    /// Binary protobuf body → binary answer; Connect `application/proto`.
    pub proto: fn(AppState, RequestMeta, Bytes) -> Encoded,
    /// A whole gRPC (or, behind tonic-web, gRPC-Web) exchange.
    pub grpc: fn(AppState, Request) -> BoxFuture<http::Response<tonic::body::Body>>,
}

/// The [`Handler`] of an operation `async fn(&AppState, &RequestMeta, Req) -> Result<Resp, Error>`.
macro_rules! handler {
    ($op:path) => {
        Handler {
            json: |state, meta, body, path| {
                Box::pin(async move {
                    let request = json::decode_with_path(&body, &path)?;
                    let answer = $op(&state, &meta, request).await?;
                    json::encode(&answer)
                })
            },
            proto: |state, meta, body| {
                Box::pin(async move {
                    let request = decode_proto(&body)?;
                    let answer = $op(&state, &meta, request).await?;
                    Ok(answer.encode_to_vec())
                })
            },
            grpc: |state, request| {
                Box::pin(grpc::unary(
                    state,
                    request,
                    |state, meta, message| async move { $op(&state, &meta, message).await },
                ))
            },
        }
    };
}

/// A binary protobuf request body.
pub fn decode_proto<T: Message + Default>(body: &[u8]) -> Result<T, Error> {
    T::decode(body).map_err(|_| {
        Error::invalid(
            "REKEY-Proto",
            "Request body is not a valid protobuf message",
        )
    })
}

/// A ZITADEL RPC: `service` is the proto's `package.Service`, `method` the RPC's name.
#[derive(Clone)]
pub struct Operation {
    pub service: String,
    pub method: &'static str,
    /// The REST route, if the RPC has one.
    pub rest: Option<Rest>,
    pub handler: Handler,
}

impl Operation {
    /// `/package.Service/Method`, the Connect and gRPC path.
    pub fn rpc_path(&self) -> String {
        format!("/{}/{}", self.service, self.method)
    }
}

/// A grpc-gateway REST binding: fields named in `{…}` come from the path; the rest of the
/// message is the JSON body (`body: "*"`), which GET and DELETE do not document.
#[derive(Clone)]
pub struct Rest {
    pub method: Method,
    pub path: String,
    /// 201 for the creating RPCs, as ZITADEL answers them; 200 otherwise.
    pub success: u16,
}

impl Rest {
    /// The names of the path parameters (proto field names), in order.
    pub fn params(&self) -> Vec<&str> {
        self.path
            .split('{')
            .skip(1)
            .filter_map(|part| part.split_once('}').map(|(name, _)| name))
            .collect()
    }

    pub fn has_body(&self) -> bool {
        self.method != Method::GET && self.method != Method::DELETE
    }
}

/// One line of [`ZITADEL`]: service, method, REST binding, operation.
struct Entry {
    service: &'static str,
    method: &'static str,
    rest: Option<(Method, &'static str, u16)>,
    handler: Handler,
}

const fn rpc(
    service: &'static str,
    method: &'static str,
    rest: Option<(Method, &'static str, u16)>,
    handler: Handler,
) -> Entry {
    Entry {
        service,
        method,
        rest,
        handler,
    }
}

const USER_V2: &str = "zitadel.user.v2.UserService";
const MGMT_V1: &str = "zitadel.management.v1.ManagementService";
const ORG_V2: &str = "zitadel.org.v2.OrganizationService";

const POST: Method = Method::POST;
const GET: Method = Method::GET;
const DELETE: Method = Method::DELETE;
const PATCH: Method = Method::PATCH;

/// Every ZITADEL RPC Rekey serves. `zitadel.user.v2.UserService` is also served as
/// `zitadel.user.v2beta.UserService` (REST `/v2beta/…`) by the same operations: the messages
/// are identical on the wire (SPEC §3), see [`ALIASES`].
#[rustfmt::skip]
static ZITADEL: &[Entry] = &[
    rpc(USER_V2, "AddHumanUser", Some((POST, "/v2/users/human", 201)), handler!(zitadel_setup::add_human_user)),
    rpc(USER_V2, "GetUserByID", Some((GET, "/v2/users/{user_id}", 200)), handler!(zitadel_setup::get_user_by_id)),
    rpc(USER_V2, "ListUsers", Some((POST, "/v2/users", 200)), handler!(zitadel_setup::list_users)),
    rpc(USER_V2, "DeactivateUser", Some((POST, "/v2/users/{user_id}/deactivate", 200)), handler!(zitadel_setup::deactivate_user)),
    rpc(USER_V2, "ReactivateUser", Some((POST, "/v2/users/{user_id}/reactivate", 200)), handler!(zitadel_setup::reactivate_user)),
    rpc(USER_V2, "LockUser", Some((POST, "/v2/users/{user_id}/lock", 200)), handler!(zitadel_setup::lock_user)),
    rpc(USER_V2, "UnlockUser", Some((POST, "/v2/users/{user_id}/unlock", 200)), handler!(zitadel_setup::unlock_user)),
    rpc(USER_V2, "DeleteUser", Some((DELETE, "/v2/users/{user_id}", 200)), handler!(zitadel_setup::delete_user)),
    rpc(USER_V2, "PasswordReset", Some((POST, "/v2/users/{user_id}/password_reset", 200)), handler!(zitadel::password_reset)),
    rpc(USER_V2, "SetPassword", Some((POST, "/v2/users/{user_id}/password", 200)), handler!(zitadel::set_password)),
    rpc(MGMT_V1, "SendHumanResetPasswordNotification", Some((POST, "/management/v1/users/{user_id}/password/_reset", 200)), handler!(zitadel::send_human_reset_password_notification)),
    rpc(MGMT_V1, "SetHumanPassword", Some((POST, "/management/v1/users/{user_id}/password", 200)), handler!(zitadel::set_human_password)),
    rpc(MGMT_V1, "SetHumanInitialPassword", Some((POST, "/management/v1/users/{user_id}/password/_initialize", 200)), handler!(zitadel::set_human_initial_password)),
    rpc(ORG_V2, "AddOrganization", Some((POST, "/v2/organizations", 201)), handler!(zitadel_setup::add_organization)),
];

/// (service, served again as, REST prefix, its REST prefix): wire-identical twins.
pub const ALIASES: &[(&str, &str, &str, &str)] = &[(
    USER_V2,
    "zitadel.user.v2beta.UserService",
    "/v2/",
    "/v2beta/",
)];

/// The table with its aliases expanded: every RPC served, once.
pub fn operations() -> &'static [Operation] {
    static OPERATIONS: LazyLock<Vec<Operation>> = LazyLock::new(|| {
        let mut all = Vec::new();
        for entry in ZITADEL {
            let rest = entry.rest.as_ref().map(|(method, path, success)| Rest {
                method: method.clone(),
                path: (*path).to_owned(),
                success: *success,
            });
            all.push(Operation {
                service: entry.service.to_owned(),
                method: entry.method,
                rest: rest.clone(),
                handler: entry.handler,
            });
            for (service, twin, prefix, twin_prefix) in ALIASES {
                if entry.service == *service {
                    all.push(Operation {
                        service: (*twin).to_owned(),
                        method: entry.method,
                        rest: rest.as_ref().map(|rest| Rest {
                            path: rest.path.replacen(prefix, twin_prefix, 1),
                            ..rest.clone()
                        }),
                        handler: entry.handler,
                    });
                }
            }
        }
        all
    });
    &OPERATIONS
}

/// The operation at a Connect / gRPC path (`/package.Service/Method`).
pub fn by_rpc_path(path: &str) -> Option<&'static Operation> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    operations()
        .iter()
        .find(|op| op.service == service && op.method == method)
}

/// The served services (`package.Service`), each once, sorted.
pub fn services() -> Vec<&'static str> {
    let mut services: Vec<&'static str> =
        operations().iter().map(|op| op.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    services
}

/// What a route without a proto is, for its documentation.
#[derive(Debug, Clone, Copy)]
pub enum RouteKind {
    /// An F5 route; `authenticated` false for `no_auth`; `body` the JSON members it reads.
    F5 {
        authenticated: bool,
        body: &'static [&'static str],
    },
    /// Liveness or readiness: no authentication, JSON status body.
    Health,
    /// An operations-API route (`/rekey/v1/…`): admin tokens, F5-style errors; `doc` says
    /// what its OpenAPI entry holds besides.
    Admin {
        doc: fn() -> operations_api::RouteDoc,
    },
    /// `/metrics`: no authentication, Prometheus text.
    Metrics,
}

/// A route of [`HTTP_ROUTES`].
pub struct HttpRoute {
    pub method: Method,
    pub path: &'static str,
    pub summary: &'static str,
    pub kind: RouteKind,
    pub handler: fn(AppState, Request) -> BoxFuture<Response>,
}

/// The F5 routes (SPEC §4; each also under [`f5::SEED_PREFIX`], see [`http_routes`]), the
/// operations API (SPEC §11, [`operations_api`]) and the unauthenticated operations routes.
#[rustfmt::skip]
pub static HTTP_ROUTES: &[HttpRoute] = &[
    HttpRoute { method: POST, path: "/api/web/custom/password/admin_reset", summary: "Email a user a password reset link (ResetPasswordByAdmin)", kind: RouteKind::F5 { authenticated: true, body: &["email"] }, handler: |s, r| Box::pin(f5::admin_reset(s, r)) },
    HttpRoute { method: POST, path: "/api/web/custom/namespaces/{namespace}/send_password_email", summary: "Deprecated twin of admin_reset; namespace must be \"system\"", kind: RouteKind::F5 { authenticated: true, body: &["email", "namespace"] }, handler: |s, r| Box::pin(f5::send_password_email(s, r)) },
    HttpRoute { method: POST, path: "/no_auth/send_password_email", summary: "Onboarding / self-service reset by cname and email; same answer whether or not they exist", kind: RouteKind::F5 { authenticated: false, body: &["cname", "email"] }, handler: |s, r| Box::pin(f5::no_auth_send_password_email(s, r)) },
    HttpRoute { method: POST, path: "/api/web/custom/password/reset", summary: "Email the calling user a reset link", kind: RouteKind::F5 { authenticated: true, body: &[] }, handler: |s, r| Box::pin(f5::self_service_reset(s, r)) },
    HttpRoute { method: GET, path: "/rekey/v1/outbox", summary: "Outbox messages, oldest first, paged (no body, no code)", kind: RouteKind::Admin { doc: operations_api::outbox_doc }, handler: |s, r| Box::pin(operations_api::list_outbox(s, r)) },
    HttpRoute { method: POST, path: "/rekey/v1/outbox/{id}/retry", summary: "Retry a failed message: requeued as it is, or reissued with a fresh code", kind: RouteKind::Admin { doc: operations_api::retry_doc }, handler: |s, r| Box::pin(operations_api::retry_outbox(s, r)) },
    HttpRoute { method: GET, path: "/rekey/v1/events", summary: "The audit trail, oldest first, paged", kind: RouteKind::Admin { doc: operations_api::events_doc }, handler: |s, r| Box::pin(operations_api::list_events(s, r)) },
    HttpRoute { method: GET, path: "/rekey/v1/tenants/{id}/settings", summary: "A tenant's settings by their CLI names", kind: RouteKind::Admin { doc: operations_api::get_settings_doc }, handler: |s, r| Box::pin(operations_api::get_settings(s, r)) },
    HttpRoute { method: PATCH, path: "/rekey/v1/tenants/{id}/settings", summary: "Set or unset (null) a tenant's settings by their CLI names", kind: RouteKind::Admin { doc: operations_api::patch_settings_doc }, handler: |s, r| Box::pin(operations_api::patch_settings(s, r)) },
    HttpRoute { method: GET, path: "/healthz", summary: "Liveness: the process is up", kind: RouteKind::Health, handler: |s, r| Box::pin(ops::healthz(s, r)) },
    HttpRoute { method: GET, path: "/readyz", summary: "Readiness: the database is reachable and migrated (503 otherwise)", kind: RouteKind::Health, handler: |s, r| Box::pin(ops::readyz(s, r)) },
    HttpRoute { method: GET, path: "/metrics", summary: "Prometheus metrics (text format 0.0.4); 404 here when REKEY_METRICS_LISTEN gives them a listener of their own", kind: RouteKind::Metrics, handler: |s, r| Box::pin(crate::metrics::metrics(s, r)) },
];

/// [`HTTP_ROUTES`] with the F5 seed-prefix aliases: (path, route).
pub fn http_routes() -> Vec<(String, &'static HttpRoute)> {
    let mut all = Vec::new();
    for route in HTTP_ROUTES {
        all.push((route.path.to_owned(), route));
    }
    for route in HTTP_ROUTES {
        if matches!(route.kind, RouteKind::F5 { .. }) {
            all.push((format!("{}{}", f5::SEED_PREFIX, route.path), route));
        }
    }
    all
}

/// The REST routes of both tables as one router.
pub fn routes() -> axum::Router<AppState> {
    use axum::extract::State;
    use axum::routing::{on, MethodFilter};
    let filter = |method: &Method| MethodFilter::try_from(method.clone()).ok();
    let mut router = axum::Router::new();
    for op in operations() {
        let Some(rest) = &op.rest else { continue };
        let Some(methods) = filter(&rest.method) else {
            continue;
        };
        let (handler, success) = (op.handler, rest.success);
        router = router.route(
            &rest.path,
            on(
                methods,
                move |State(state): State<AppState>, request: Request| {
                    crate::faces::zitadel_rest::handle(state, request, handler, success)
                },
            ),
        );
    }
    for (path, route) in http_routes() {
        let Some(methods) = filter(&route.method) else {
            continue;
        };
        let handler = route.handler;
        router = router.route(
            &path,
            on(
                methods,
                move |State(state): State<AppState>, request: Request| handler(state, request),
            ),
        );
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openapi::schema::Descriptors;
    use std::collections::BTreeSet;

    /// A proto method missing from the table would answer UNIMPLEMENTED in every form and be
    /// undocumented; a table entry without a proto method would document a fiction.
    #[test]
    fn the_table_has_exactly_the_methods_of_the_protos() {
        let descriptors = Descriptors::decode(rekey_proto::FILE_DESCRIPTOR_SET).unwrap();
        let table: BTreeSet<String> = operations()
            .iter()
            .map(|op| format!("{}/{}", op.service, op.method))
            .collect();
        assert_eq!(table.len(), operations().len(), "an RPC is listed twice");
        assert_eq!(table, descriptors.methods());
        let served: BTreeSet<String> = services().into_iter().map(str::to_owned).collect();
        assert_eq!(&served, descriptors.services());
    }

    #[test]
    fn rest_bindings_are_unique_and_v2beta_mirrors_v2() {
        let mut seen = BTreeSet::new();
        for op in operations() {
            let rest = op.rest.as_ref().unwrap();
            assert!(seen.insert((rest.method.clone(), rest.path.clone())));
            if op.service.contains("v2beta") {
                assert!(rest.path.starts_with("/v2beta/"), "{}", rest.path);
            }
        }
        let pr = by_rpc_path("/zitadel.user.v2beta.UserService/PasswordReset").unwrap();
        assert_eq!(
            pr.rest.as_ref().unwrap().path,
            "/v2beta/users/{user_id}/password_reset"
        );
        assert_eq!(pr.rest.as_ref().unwrap().params(), ["user_id"]);
        assert!(by_rpc_path("/zitadel.user.v2.UserService/Nope").is_none());
        let add = by_rpc_path("/zitadel.org.v2.OrganizationService/AddOrganization").unwrap();
        assert_eq!(add.rest.as_ref().unwrap().success, 201);
    }
}
