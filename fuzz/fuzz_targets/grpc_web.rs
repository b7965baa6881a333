//! gRPC and gRPC-Web request framing as Rekey's gRPC face reads it: tonic-web's layer (as
//! `faces::grpc::service` installs it) in front of tonic's message decoder, with the body limit
//! Rekey configures, reading `zitadel.user.v2.PasswordResetRequest`s from a body delivered in
//! fuzz-chosen chunks. Rekey has no frame decoder of its own; this checks the one it relies on
//! against a reference reading of the framing (5-byte header: flag, big-endian u32 length).
//!
//! Invariants: the messages read are exactly those of the reference, in order, each taken from
//! inside the body (never past its end); a truncated frame, a flag other than 0, a length over
//! the limit or a payload that is not a message ends the stream with an error (except one
//! tonic quirk, see [`reference`]); `-text`
//! (base64) bodies read the same as the binary form; chunking never changes the outcome.
#![no_main]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use http_body::Frame;
use http_body_util::StreamBody;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use rekey_proto::zitadel::user::v2::PasswordResetRequest;
use tonic::codec::{Codec, Streaming};
use tower::{Layer, ServiceExt};

/// Rekey's default body limit (`ServeSettings::body_limit_bytes`), which it also sets as
/// tonic's `max_decoding_message_size`.
const LIMIT: usize = 64 * 1024;

#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<PasswordResetRequest>,
    error: bool,
}

/// The framing as the gRPC spec states it, independently of tonic.
fn reference(mut body: &[u8]) -> Outcome {
    let mut messages = Vec::new();
    loop {
        if body.is_empty() {
            return Outcome {
                messages,
                error: false,
            };
        }
        let error = Outcome {
            messages: messages.clone(),
            error: true,
        };
        let Some((header, rest)) = body.split_first_chunk::<5>() else {
            return error;
        };
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if header[0] != 0 || len > LIMIT {
            return error;
        }
        if rest.is_empty() && len > 0 {
            // tonic 0.14 reads a frame's header before its payload and at the end of the body
            // only looks for unread bytes: a last frame cut right after its header ends the
            // stream cleanly rather than with "Unexpected EOF". Rekey's RPCs are unary, so the
            // request still fails ("Missing request message") or the frame is ignored after the
            // one message; accepted here as tonic's behaviour.
            return Outcome {
                messages,
                error: false,
            };
        }
        if rest.len() < len {
            return error;
        }
        let (payload, rest) = rest.split_at(len);
        match PasswordResetRequest::decode(payload) {
            Ok(message) => messages.push(message),
            Err(_) => return error,
        }
        body = rest;
    }
}

/// Sends `body` through tonic-web and tonic as one request, in chunks of the given sizes.
fn through_tonic(content_type: &'static str, body: Vec<u8>, sizes: &[u8]) -> Outcome {
    let seen = Arc::new(Mutex::new(Outcome {
        messages: Vec::new(),
        error: false,
    }));
    let sink = seen.clone();
    let inner = tower::service_fn(move |request: http::Request<tonic::body::Body>| {
        let sink = sink.clone();
        async move {
            let decoder = tonic_prost::ProstCodec::<(), PasswordResetRequest>::default().decoder();
            let mut stream =
                Streaming::new_request(decoder, request.into_body(), None, Some(LIMIT));
            while let Some(item) = stream.next().await {
                let mut seen = sink.lock().unwrap_or_else(|e| e.into_inner());
                match item {
                    Ok(message) => seen.messages.push(message),
                    Err(_) => {
                        seen.error = true;
                        break;
                    }
                }
            }
            Ok::<_, Infallible>(http::Response::new(tonic::body::Body::empty()))
        }
    });
    let service = tonic_web::GrpcWebLayer::new().layer(inner);

    let mut chunks = Vec::new();
    let mut rest = Bytes::from(body);
    let mut cycle = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = match cycle.next() {
            Some(&size) => usize::from(size) + 1,
            None => rest.len(),
        };
        chunks.push(rest.split_to(size.min(rest.len())));
    }
    let frames = futures::stream::iter(
        chunks
            .into_iter()
            .map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))),
    );
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri("/zitadel.user.v2.UserService/PasswordReset")
        .version(http::Version::HTTP_11)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(StreamBody::new(frames))
        .unwrap_or_else(|err| panic!("request: {err}"));
    let response = futures::executor::block_on(service.oneshot(request));
    assert!(response.is_ok());
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::replace(
        &mut *seen,
        Outcome {
            messages: Vec::new(),
            error: false,
        },
    )
}

fuzz_target!(|input: (u8, Vec<u8>, Vec<u8>)| {
    let (mode, sizes, body) = input;
    let sizes = &sizes[..sizes.len().min(16)];
    let expected = reference(&body);
    match mode % 3 {
        0 => {
            let got = through_tonic("application/grpc-web+proto", body, sizes);
            assert_eq!(got, expected, "grpc-web");
        }
        1 => {
            let text = STANDARD.encode(&body).into_bytes();
            let got = through_tonic("application/grpc-web-text+proto", text, sizes);
            assert_eq!(got, expected, "grpc-web-text");
        }
        _ => {
            // Arbitrary bytes as a `-text` body: whatever base64 tonic-web accepts, every
            // message it reads must come from inside the decoded body.
            let limit = body.len() / 4 * 3 + 3;
            let got = through_tonic("application/grpc-web-text+proto", body, sizes);
            let used: usize = got.messages.iter().map(|m| m.encoded_len() + 5).sum();
            assert!(used <= limit, "read {used} bytes from at most {limit}");
        }
    }
});
