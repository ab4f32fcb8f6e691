//! The invocation's body handed to the handler as the bytes Lambda sent, unparsed.
//!
//! lambda_runtime deserializes every body into the handler's payload type before the handler
//! runs. Any type it can produce (even a `RawValue`) means a full JSON pass over the body, and
//! the handler then parses the same 6 MB again into the borrowed Kafka event. This layer takes
//! the body out of the invocation before that step, keyed by request id, and leaves `null` in
//! its place, which the runtime parses into `()` at no cost; the handler takes the body back.
//! One JSON pass per invocation instead of two.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::LambdaInvocation;

/// The bodies taken out of invocations that are being handled, by request id.
#[derive(Clone, Default)]
pub struct RawBodies(Arc<Mutex<HashMap<String, Bytes>>>);

impl RawBodies {
    /// Takes the body of the invocation `request_id`, once.
    pub fn take(&self, request_id: &str) -> Option<Bytes> {
        self.lock().remove(request_id)
    }

    fn put(&self, request_id: &str, body: Bytes) {
        self.lock().insert(request_id.to_owned(), body);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Bytes>> {
        crate::locks::lock(&self.0)
    }
}

/// The body a taken invocation carries on: JSON for `()`.
const PLACEHOLDER: &[u8] = b"null";

/// Takes each invocation's body into [`RawBodies`] before the runtime deserializes it.
pub struct RawBodyLayer(RawBodies);

impl RawBodyLayer {
    /// A layer that puts the bodies into `bodies`.
    pub fn new(bodies: RawBodies) -> Self {
        Self(bodies)
    }
}

impl<S> Layer<S> for RawBodyLayer {
    type Service = RawBodyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RawBodyService {
            inner,
            bodies: self.0.clone(),
        }
    }
}

/// See [`RawBodyLayer`].
pub struct RawBodyService<S> {
    inner: S,
    bodies: RawBodies,
}

impl<S: Service<LambdaInvocation>> Service<LambdaInvocation> for RawBodyService<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut invocation: LambdaInvocation) -> Self::Future {
        let body = std::mem::replace(&mut invocation.body, Bytes::from_static(PLACEHOLDER));
        self.bodies.put(&invocation.context.request_id, body);
        self.inner.call(invocation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_taken_once_by_its_request_id() {
        let bodies = RawBodies::default();
        bodies.put("a", Bytes::from_static(b"{\"records\":{}}"));
        bodies.put("b", Bytes::from_static(b"[]"));
        assert_eq!(bodies.take("b"), Some(Bytes::from_static(b"[]")));
        assert_eq!(bodies.take("b"), None);
        assert_eq!(
            bodies.take("a"),
            Some(Bytes::from_static(b"{\"records\":{}}"))
        );
    }
}
