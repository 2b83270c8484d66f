//! The Lambda side of ingest: API Gateway (REST v1, HTTP API v2 with payload 1.0 or 2.0),
//! function URL and ALB events in, the matching response out.
//!
//! `lambda_http` turns the event into an HTTP request, decoding `isBase64Encoded` bodies; but
//! it panics on a body that claims base64 and is not, which would surface as a 502 and a
//! provider retry storm. [`service`] first checks such bodies: an undecodable one reaches the
//! app with no body and the [`INVALID_BODY_HEADER`] marker, and the app answers 400.

use std::task::{Context, Poll};

use axum::Router;
use base64::Engine;
use lambda_http::http::{HeaderMap, HeaderValue};
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, LambdaEvent, Service};

/// Header set on a request whose base64 body could not be decoded (any such header sent by a
/// client is replaced).
pub const INVALID_BODY_HEADER: &str = "x-doorbell-invalid-body";

/// The Lambda service: [`Base64Guard`] in front of `lambda_http`'s adapter around `app`.
pub fn service(app: Router) -> Base64Guard<Adapter<'static, axum::response::Response, Router>> {
    Base64Guard {
        inner: Adapter::from(app),
    }
}

/// Checks base64 bodies before `lambda_http` decodes them. See the module docs.
#[derive(Clone, Debug)]
pub struct Base64Guard<S> {
    inner: S,
}

fn guard(
    body: &mut Option<String>,
    is_base64: &mut bool,
    headers: &mut HeaderMap,
    multi: Option<&mut HeaderMap>,
) {
    headers.remove(INVALID_BODY_HEADER);
    let bad = *is_base64
        && body
            .as_deref()
            .is_some_and(|b| base64::engine::general_purpose::STANDARD.decode(b).is_err());
    if let Some(m) = multi {
        m.remove(INVALID_BODY_HEADER);
        if bad {
            m.insert(INVALID_BODY_HEADER, HeaderValue::from_static("base64"));
        }
    }
    if bad {
        *body = None;
        *is_base64 = false;
        headers.insert(INVALID_BODY_HEADER, HeaderValue::from_static("base64"));
    }
}

/// Applies the guard to one event (public for fixture tests).
pub fn sanitize(req: &mut LambdaRequest) {
    match req {
        LambdaRequest::ApiGatewayV1(r) => guard(
            &mut r.body,
            &mut r.is_base64_encoded,
            &mut r.headers,
            Some(&mut r.multi_value_headers),
        ),
        LambdaRequest::ApiGatewayV2(r) => {
            guard(&mut r.body, &mut r.is_base64_encoded, &mut r.headers, None)
        }
        LambdaRequest::Alb(r) => guard(
            &mut r.body,
            &mut r.is_base64_encoded,
            &mut r.headers,
            Some(&mut r.multi_value_headers),
        ),
        _ => {}
    }
}

impl<S> Service<LambdaEvent<LambdaRequest>> for Base64Guard<S>
where
    S: Service<LambdaEvent<LambdaRequest>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut event: LambdaEvent<LambdaRequest>) -> Self::Future {
        sanitize(&mut event.payload);
        self.inner.call(event)
    }
}
