//! The one request handler every service runs: route, look up, answer, log.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{FutureExt, Stream};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{ALLOW, CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::dataset::Dataset;
use crate::records::ListStream;
use crate::request_log;
use crate::router::{Route, RouteMatch, route};
use crate::service::Service;

pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// The methods a known path allows, as the original lists them.
pub const ALLOWED_METHODS: &str = "HEAD, GET";

/// What a running service needs to answer requests.
#[derive(Debug)]
pub struct AppState {
    pub service: Service,
    pub data: Dataset,
    /// How long a request head or body may go without a byte (`client_timeout`).
    pub client_timeout: Duration,
}

/// What the handler answers: a response, or a 400 that the connection writes
/// itself (hyper would add `content-length: 0`, which Node.js never sent).
pub enum Answer {
    Response(Response<ResponseBody>),
    BadRequest,
}

/// Answers any request and logs it.
pub async fn handle_request(state: &AppState, request: Request<Incoming>) -> Answer {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let answer = if parts.method == Method::CONNECT {
        // A CONNECT's "body" is a tunnel that never ends: answer (the router
        // says 501) and close, never wait for it.
        respond(state, parts.method.as_str(), parts.uri.path()).map(closing)
    } else if discard(body, state.client_timeout).await {
        respond(state, parts.method.as_str(), parts.uri.path())
    } else {
        // A body stalled for the client timeout: 408, and the connection
        // closes (what is left of the body is never read).
        Answer::Response(closing(status_only(StatusCode::REQUEST_TIMEOUT)))
    };
    let status = match &answer {
        Answer::Response(response) => response.status().as_u16(),
        Answer::BadRequest => 400,
    };
    request_log::log(&request_log::Entry {
        method: parts.method.as_str(),
        target: &request_target(&parts.uri),
        status,
        duration: started.elapsed(),
    });
    answer
}

impl Answer {
    fn map(self, f: impl FnOnce(Response<ResponseBody>) -> Response<ResponseBody>) -> Answer {
        match self {
            Answer::Response(response) => Answer::Response(f(response)),
            Answer::BadRequest => Answer::BadRequest,
        }
    }
}

/// The request target as the request line gave it, without allocating for
/// the usual origin form (`/path?query`).
fn request_target(uri: &hyper::Uri) -> std::borrow::Cow<'_, str> {
    match uri.path_and_query() {
        Some(target) if uri.scheme().is_none() && uri.authority().is_none() => {
            target.as_str().into()
        }
        _ => uri.to_string().into(),
    }
}

/// Reads and drops a request body, as Node.js does, so that the connection can
/// serve the next request. False when it stalled: no byte came for `stall`.
async fn discard(mut body: Incoming, stall: Duration) -> bool {
    // Most requests have no body: no timer (nor clock read) for them.
    while !body.is_end_stream() {
        let mut next = body.frame();
        let frame = match (&mut next).now_or_never() {
            Some(frame) => frame,
            None => match tokio::time::timeout(stall, next).await {
                Ok(frame) => frame,
                Err(_) => return false,
            },
        };
        match frame {
            Some(Ok(_frame)) => {}
            Some(Err(_)) | None => return true,
        }
    }
    true
}

/// The response to `method` on `raw_path` (HEAD is answered as GET; hyper
/// drops the body and keeps the headers, Content-Length included), except a
/// HEAD that answers 404: the original never sets that body, so it carries no
/// Content-Type and no Content-Length.
pub fn respond(state: &AppState, method: &str, raw_path: &str) -> Answer {
    Answer::Response(match route(&state.service, method, raw_path) {
        RouteMatch::Get(found) => serve(&state.data, found),
        RouteMatch::Options => with_allow(status_only(StatusCode::NO_CONTENT)),
        RouteMatch::MethodNotAllowed => {
            with_allow(text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"))
        }
        RouteMatch::NotImplemented { known_path } => {
            let response = text(StatusCode::NOT_IMPLEMENTED, "Not Implemented");
            if known_path {
                with_allow(response)
            } else {
                response
            }
        }
        RouteMatch::NotFound if method == "HEAD" => status_only(StatusCode::NOT_FOUND),
        RouteMatch::NotFound => text(StatusCode::NOT_FOUND, "Not Found"),
        RouteMatch::BadRequest => return Answer::BadRequest,
    })
}

fn serve(data: &Dataset, found: Route) -> Response<ResponseBody> {
    let body = match found {
        Route::Ready => return text(StatusCode::OK, "Ready to receive requests"),
        Route::ApiReady => return text(StatusCode::OK, "API ready to receive requests"),
        Route::Users => return json_list(data.users_list()),
        Route::User(id) => return json_or_no_content(data.user_json(id)),
        Route::Threads => return json_list(data.threads_list()),
        Route::Thread(id) => return json_or_no_content(data.thread_json(id)),
        Route::Posts => return json_list(data.posts_list()),
        Route::PostsInThread(id) => data.posts_in_thread_json(id),
        Route::PostsByUser(id) => data.posts_by_user_json(id),
    };
    json(body)
}

/// A whole list: a short one from its bytes written at startup, a long one
/// written while it is sent, with its Content-Length.
fn json_list(list: ListStream) -> Response<ResponseBody> {
    match list.prerendered() {
        Some(body) => json(body),
        None => {
            let length = list.len();
            with_content_type(ResponseBody::List { list, length }, JSON_CONTENT_TYPE)
        }
    }
}

fn json_or_no_content(body: Option<Bytes>) -> Response<ResponseBody> {
    match body {
        Some(body) => json(body),
        None => status_only(StatusCode::NO_CONTENT),
    }
}

fn json(body: Bytes) -> Response<ResponseBody> {
    with_content_type(ResponseBody::Bytes(Some(body)), JSON_CONTENT_TYPE)
}

fn text(status: StatusCode, body: &'static str) -> Response<ResponseBody> {
    let mut response = with_content_type(
        ResponseBody::Bytes(Some(Bytes::from_static(body.as_bytes()))),
        TEXT_CONTENT_TYPE,
    );
    *response.status_mut() = status;
    response
}

/// A 200 of `body` with its Content-Type; hyper writes the Content-Length
/// after it from the body's exact size (also for HEAD, without the body), the
/// order Node.js wrote them in.
fn with_content_type(body: ResponseBody, content_type: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A response without a body (hyper adds `content-length: 0` where HTTP
/// allows one: not on 204, nor on a HEAD's answer).
fn status_only(status: StatusCode) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Bytes(None));
    *response.status_mut() = status;
    response
}

fn with_allow(mut response: Response<ResponseBody>) -> Response<ResponseBody> {
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
    response
}

/// The response, with the connection closed after it.
fn closing(mut response: Response<ResponseBody>) -> Response<ResponseBody> {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A response body: bytes in hand, or a long list written while it is sent.
pub enum ResponseBody {
    Bytes(Option<Bytes>),
    List { list: ListStream, length: u64 },
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ResponseBody::Bytes(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::List { list, .. } => Pin::new(list)
                .poll_next(context)
                .map(|chunk| chunk.map(|chunk| chunk.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ResponseBody::Bytes(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Bytes(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseBody::List { length, .. } => SizeHint::with_exact(*length),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absolute_form_target_is_logged_whole() {
        let uri = "http://example.com/api?x=1".parse().unwrap();
        assert_eq!(request_target(&uri), "http://example.com/api?x=1");
        let uri = "/api/threads/2?x=1".parse().unwrap();
        assert_eq!(request_target(&uri), "/api/threads/2?x=1");
    }
}
