//! Requests by face, operation and code, and their latency: which table entry a request is
//! (decided from its method, path and content type, before it runs), and lock-free counters for
//! each (face, operation) pair, allocated once.
//!
//! Operations are the names of the one table: a ZITADEL RPC's method (`PasswordReset`, whatever
//! the form or the v2/v2beta alias), an HTTP route's `METHOD /path` template (F5 seed-prefix
//! aliases count as their root route), the hosted pages' and the documents' routes. Anything
//! else is `unknown`, so a scan of random paths cannot grow the series.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use http::Method;

use crate::faces::f5;
use crate::operations::{self, RouteKind};

/// The wire faces, in label order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Face {
    Rest,
    Connect,
    Grpc,
    GrpcWeb,
    F5,
    Pages,
    Ops,
}

pub(crate) const FACES: [&str; 7] = ["rest", "connect", "grpc", "grpc_web", "f5", "pages", "ops"];

/// The operation label of a request matching no route.
const UNKNOWN: usize = 0;

/// The hosted pages' routes (`crate::pages::routes`).
const PAGES: &[(Method, &str)] = &[
    (Method::GET, "/ui/password/reset"),
    (Method::POST, "/ui/password/reset"),
    (Method::GET, "/ui/password/set"),
    (Method::POST, "/ui/password/set"),
    (Method::GET, "/ui/password/forgot"),
    (Method::POST, "/ui/password/forgot"),
    (Method::GET, "/ui/static/rekey.css"),
];

/// A route template, split at `/`; `None` is a `{parameter}`.
struct Template {
    method: Method,
    segments: Vec<Option<&'static str>>,
    face: Face,
    operation: usize,
}

impl Template {
    fn new(method: Method, path: &'static str, face: Face, operation: usize) -> Self {
        let segments = path
            .split('/')
            .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then_some(s))
            .collect();
        Self {
            method,
            segments,
            face,
            operation,
        }
    }

    /// Whether `path` fits the template (the method is checked by the caller).
    fn fits(&self, path: &str) -> bool {
        let mut parts = path.split('/');
        for segment in &self.segments {
            match (segment, parts.next()) {
                (_, None) => return false,
                (None, Some("")) => return false,
                (None, Some(_)) => {}
                (Some(lit), Some(part)) if *lit == part => {}
                (Some(_), Some(_)) => return false,
            }
        }
        parts.next().is_none()
    }
}

/// Every operation label and how a request finds its own.
struct Table {
    operations: Vec<String>,
    /// `/package.Service/Method` → operation.
    rpc: Vec<(String, usize)>,
    /// The served `package.Service`s: their paths are Connect's (or gRPC's) whatever the method.
    services: Vec<String>,
    templates: Vec<Template>,
    /// `/docs` and its assets.
    docs: usize,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let mut operations = vec!["unknown".to_owned()];
    let mut index = |name: String| match operations.iter().position(|o| *o == name) {
        Some(i) => i,
        None => {
            operations.push(name);
            operations.len() - 1
        }
    };
    let mut rpc = Vec::new();
    let mut templates = Vec::new();
    for op in operations::operations() {
        let i = index(op.method.to_owned());
        rpc.push((op.rpc_path(), i));
        if let Some(rest) = &op.rest {
            // The table's paths live as long as the table (a static).
            let path: &'static str = Box::leak(rest.path.clone().into_boxed_str());
            templates.push(Template::new(rest.method.clone(), path, Face::Rest, i));
        }
    }
    for route in operations::HTTP_ROUTES {
        let i = index(format!("{} {}", route.method, route.path));
        let face = match route.kind {
            RouteKind::F5 { .. } => Face::F5,
            _ => Face::Ops,
        };
        templates.push(Template::new(route.method.clone(), route.path, face, i));
    }
    for (method, path) in PAGES {
        let i = index(format!("{method} {path}"));
        templates.push(Template::new(method.clone(), path, Face::Pages, i));
    }
    let i = index("GET /openapi.json".to_owned());
    templates.push(Template::new(Method::GET, "/openapi.json", Face::Ops, i));
    let docs = index("GET /docs".to_owned());
    Table {
        operations,
        rpc,
        services: operations::services()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        templates,
        docs,
    }
});

/// The `package.Service` of an RPC path `/package.Service/Method`.
fn rpc_service(path: &str) -> Option<&str> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!method.is_empty() && !method.contains('/') && service.contains('.')).then_some(service)
}

/// A request's (face, operation), as indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    pub face: Face,
    pub operation: usize,
}

/// Which entry a request is. No allocation: the table is built once.
pub(crate) fn classify(method: &Method, path: &str, grpc: Option<bool>) -> Route {
    let table = &*TABLE;
    let rpc = || {
        table
            .rpc
            .iter()
            .find(|(rpc, _)| rpc == path)
            .map_or(UNKNOWN, |(_, i)| *i)
    };
    match grpc {
        Some(web) => {
            let face = if web { Face::GrpcWeb } else { Face::Grpc };
            return Route {
                face,
                operation: rpc(),
            };
        }
        None => {
            if rpc_service(path).is_some_and(|s| table.services.iter().any(|t| t == s)) {
                // Connect unary is a POST; anything else (a CORS preflight) is not the RPC.
                let operation = if *method == Method::POST {
                    rpc()
                } else {
                    UNKNOWN
                };
                return Route {
                    face: Face::Connect,
                    operation,
                };
            }
        }
    }
    if path == "/docs" || path.starts_with("/docs/") {
        return Route {
            face: Face::Ops,
            operation: table.docs,
        };
    }
    let root = path.strip_prefix(f5::SEED_PREFIX).unwrap_or(path);
    let seed_alias = root.len() != path.len();
    let mut fallback = None;
    for template in &table.templates {
        if seed_alias && template.face != Face::F5 {
            continue;
        }
        if template.fits(root) {
            if template.method == *method {
                return Route {
                    face: template.face,
                    operation: template.operation,
                };
            }
            fallback.get_or_insert(template.face);
        }
    }
    // Unknown: the face that answers it (a wrong method of a known path: that path's face).
    let face = fallback.unwrap_or(if path.starts_with("/ui/") {
        Face::Pages
    } else if f5::is_f5_path(path) {
        Face::F5
    } else {
        Face::Rest
    });
    Route {
        face,
        operation: UNKNOWN,
    }
}

/// The operation labels, by index.
#[cfg(test)]
pub(crate) fn operation_names() -> &'static [String] {
    &TABLE.operations
}

/// Upper bounds of the latency buckets, in seconds (the request deadline is 10 s by default).
pub(crate) const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// gRPC status codes are stored as this plus the code, HTTP statuses as themselves.
const GRPC_BASE: u16 = 1000;

/// A response's code label: an HTTP status or a gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    Http(u16),
    Grpc(i32),
}

impl Code {
    fn key(self) -> u16 {
        match self {
            Code::Http(status) => status.clamp(1, GRPC_BASE - 1),
            Code::Grpc(code) => GRPC_BASE + u16::try_from(code.clamp(0, 16)).unwrap_or(2),
        }
    }

    /// The label value: `"200"`, or the gRPC code name (`"NOT_FOUND"`).
    pub(crate) fn label(key: u16) -> std::borrow::Cow<'static, str> {
        const GRPC: [&str; 17] = [
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        ];
        match key.checked_sub(GRPC_BASE) {
            Some(code) => GRPC
                .get(usize::from(code))
                .copied()
                .unwrap_or("UNKNOWN")
                .into(),
            None => key.to_string().into(),
        }
    }
}

/// Codes seen by one (face, operation): a few slots claimed on first use, without a lock.
const CODE_SLOTS: usize = 16;

#[derive(Default)]
struct Codes {
    keys: [AtomicU16; CODE_SLOTS],
    counts: [AtomicU64; CODE_SLOTS],
    /// Codes beyond the slots (never seen in practice: an operation answers with few codes).
    other: AtomicU64,
}

impl Codes {
    fn add(&self, key: u16) {
        for (slot, count) in self.keys.iter().zip(&self.counts) {
            let held = match slot.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => key,
                Err(held) => held,
            };
            if held == key {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.other.fetch_add(1, Ordering::Relaxed);
    }
}

/// Latency counts per bucket (not cumulative; the last one is `+Inf`) and their sum.
#[derive(Default)]
struct Latency {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// Every (face, operation) pair's counters.
pub(crate) struct Requests {
    entries: Vec<(Codes, Latency)>,
}

/// One (face, operation) pair's numbers, read for a scrape.
pub(crate) struct Snapshot {
    pub face: &'static str,
    pub operation: &'static str,
    /// (code key, count); `None` for codes past the slots.
    pub codes: Vec<(Option<u16>, u64)>,
    /// Cumulative, one per bucket then `+Inf`.
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
}

impl Default for Requests {
    fn default() -> Self {
        let size = FACES.len() * TABLE.operations.len();
        Self {
            entries: (0..size).map(|_| Default::default()).collect(),
        }
    }
}

impl Requests {
    pub(crate) fn record(&self, route: Route, code: Code, elapsed: Duration) {
        let index = route.face as usize * TABLE.operations.len() + route.operation;
        let Some((codes, latency)) = self.entries.get(index) else {
            return;
        };
        codes.add(code.key());
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        latency.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        latency.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The pairs that have seen a request.
    pub(crate) fn snapshot(&self) -> Vec<Snapshot> {
        let names = &TABLE.operations;
        let mut out = Vec::new();
        for (index, (codes, latency)) in self.entries.iter().enumerate() {
            let mut buckets = Vec::with_capacity(BUCKETS.len() + 1);
            let mut total = 0;
            for bucket in &latency.buckets {
                total += bucket.load(Ordering::Relaxed);
                buckets.push(total);
            }
            if total == 0 {
                continue;
            }
            let mut counted: Vec<(Option<u16>, u64)> = codes
                .keys
                .iter()
                .zip(&codes.counts)
                .filter_map(|(key, count)| {
                    let key = key.load(Ordering::Acquire);
                    (key != 0).then(|| (Some(key), count.load(Ordering::Relaxed)))
                })
                .collect();
            let other = codes.other.load(Ordering::Relaxed);
            if other > 0 {
                counted.push((None, other));
            }
            out.push(Snapshot {
                face: FACES[index / names.len()],
                operation: names[index % names.len()].as_str(),
                codes: counted,
                buckets,
                sum_seconds: latency.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(route: Route) -> (&'static str, &'static str) {
        (
            FACES[route.face as usize],
            operation_names()[route.operation].as_str(),
        )
    }

    #[test]
    fn requests_find_their_table_entry() {
        let rpc = "/zitadel.user.v2beta.UserService/PasswordReset";
        for (method, path, grpc, want) in [
            (
                Method::POST,
                "/v2/users/123/password_reset",
                None,
                ("rest", "PasswordReset"),
            ),
            (
                Method::POST,
                "/v2beta/users/123/password_reset",
                None,
                ("rest", "PasswordReset"),
            ),
            (Method::POST, rpc, None, ("connect", "PasswordReset")),
            (Method::POST, rpc, Some(false), ("grpc", "PasswordReset")),
            (Method::POST, rpc, Some(true), ("grpc_web", "PasswordReset")),
            (
                Method::POST,
                "/zitadel.user.v2.UserService/Nope",
                None,
                ("connect", "unknown"),
            ),
            (Method::OPTIONS, rpc, None, ("connect", "unknown")),
            (Method::DELETE, "/v2/users/9", None, ("rest", "DeleteUser")),
            (Method::GET, "/v2/users/9", None, ("rest", "GetUserByID")),
            (Method::PUT, "/v2/users/9", None, ("rest", "unknown")),
            (Method::GET, "/v2/users//x", None, ("rest", "unknown")),
            (
                Method::POST,
                "/no_auth/send_password_email",
                None,
                ("f5", "POST /no_auth/send_password_email"),
            ),
            (
                Method::POST,
                &format!(
                    "{}/api/web/custom/namespaces/system/send_password_email",
                    f5::SEED_PREFIX
                ),
                None,
                (
                    "f5",
                    "POST /api/web/custom/namespaces/{namespace}/send_password_email",
                ),
            ),
            (
                Method::GET,
                &format!("{}/healthz", f5::SEED_PREFIX),
                None,
                ("rest", "unknown"),
            ),
            (Method::GET, "/healthz", None, ("ops", "GET /healthz")),
            (Method::GET, "/metrics", None, ("ops", "GET /metrics")),
            (
                Method::GET,
                "/openapi.json",
                None,
                ("ops", "GET /openapi.json"),
            ),
            (
                Method::GET,
                "/docs/swagger-ui.css",
                None,
                ("ops", "GET /docs"),
            ),
            (
                Method::POST,
                "/ui/password/reset",
                None,
                ("pages", "POST /ui/password/reset"),
            ),
            (Method::GET, "/ui/nothing", None, ("pages", "unknown")),
            (Method::GET, "/wp-login.php", None, ("rest", "unknown")),
        ] {
            assert_eq!(name(classify(&method, path, grpc)), want, "{method} {path}");
        }
    }

    #[test]
    fn codes_keep_their_slots_and_overflow_is_counted() {
        let requests = Requests::default();
        let route = classify(&Method::GET, "/healthz", None);
        for status in [200, 200, 503] {
            requests.record(route, Code::Http(status), Duration::from_millis(3));
        }
        requests.record(route, Code::Grpc(5), Duration::from_secs(30));
        let snap = requests.snapshot();
        assert_eq!(snap.len(), 1);
        let labels: Vec<_> = snap[0]
            .codes
            .iter()
            .map(|(key, n)| (Code::label(key.unwrap_or(0)).into_owned(), *n))
            .collect();
        assert_eq!(
            labels,
            [
                ("200".into(), 2),
                ("503".into(), 1),
                ("NOT_FOUND".into(), 1)
            ]
        );
        assert_eq!(snap[0].buckets[0], 3, "3 ms is in the first bucket");
        assert_eq!(*snap[0].buckets.last().unwrap(), 4, "+Inf counts all");
        assert!((snap[0].sum_seconds - 30.009).abs() < 1e-9);

        let codes = Codes::default();
        for key in 1..=(CODE_SLOTS as u16 + 3) {
            codes.add(key);
        }
        assert_eq!(codes.other.load(Ordering::Relaxed), 3);
    }
}
