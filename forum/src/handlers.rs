//! The one request handler every service runs: route, look up, answer, log.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{FutureExt, Stream};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{ALLOW, CONNECTION, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::http::request::Parts;
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

/// How a request is handled: answered at once (no body to read, nearly
/// every request), or after its body is read and dropped.
pub enum Handling {
    Answered(Answer),
    ReadingBody(Pin<Box<dyn Future<Output = Answer> + Send>>),
}

/// Answers any request and logs it. A request without a body is answered
/// within this call: no future is kept per request (hyper moves a
/// connection's in-flight future into place per request), no `Arc` cloned.
pub fn handle_request(state: &Arc<AppState>, request: Request<Incoming>) -> Handling {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    if parts.method == Method::CONNECT {
        // A CONNECT's "body" is a tunnel that never ends: answer (the router
        // says 501) and close, never wait for it.
        let reply = respond(state, parts.method.as_str(), parts.uri.path()).map(Reply::closing);
        return Handling::Answered(answer(parts, started, reply));
    }
    if body.is_end_stream() {
        let reply = respond(state, parts.method.as_str(), parts.uri.path());
        return Handling::Answered(answer(parts, started, reply));
    }
    let state = Arc::clone(state);
    Handling::ReadingBody(Box::pin(async move {
        let reply = if discard(body, state.client_timeout).await {
            respond(&state, parts.method.as_str(), parts.uri.path())
        } else {
            // A body stalled for the client timeout: 408, and the connection
            // closes (what is left of the body is never read).
            Some(Reply::status_only(StatusCode::REQUEST_TIMEOUT).closing())
        };
        answer(parts, started, reply)
    }))
}

/// Logs the request and builds its answer (`None`: a 400) in the request's
/// own header map, emptied: hyper keeps each response's map to parse the
/// connection's next request head into, so no map is allocated per request.
fn answer(parts: Parts, started: Instant, reply: Option<Reply>) -> Answer {
    request_log::log(&request_log::Entry {
        method: parts.method.as_str(),
        target: &request_target(&parts.uri),
        status: reply.as_ref().map_or(400, |reply| reply.status.as_u16()),
        duration: started.elapsed(),
    });
    match reply {
        Some(reply) => Answer::Response(reply.into_response(parts.headers)),
        None => Answer::BadRequest,
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

/// The reply to `method` on `raw_path`, `None` for a 400 (HEAD is answered
/// as GET; hyper drops the body and keeps the headers, Content-Length
/// included), except a HEAD that answers 404: the original never sets that
/// body, so it carries no Content-Type and no Content-Length.
fn respond(state: &AppState, method: &str, raw_path: &str) -> Option<Reply> {
    Some(match route(&state.service, method, raw_path) {
        RouteMatch::Get(found) => serve(&state.data, found),
        RouteMatch::Options => Reply::status_only(StatusCode::NO_CONTENT).allowing(),
        RouteMatch::MethodNotAllowed => {
            Reply::text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed").allowing()
        }
        RouteMatch::NotImplemented { known_path } => {
            let reply = Reply::text(StatusCode::NOT_IMPLEMENTED, "Not Implemented");
            if known_path { reply.allowing() } else { reply }
        }
        RouteMatch::NotFound if method == "HEAD" => Reply::status_only(StatusCode::NOT_FOUND),
        RouteMatch::NotFound => Reply::text(StatusCode::NOT_FOUND, "Not Found"),
        RouteMatch::BadRequest => return None,
    })
}

fn serve(data: &Dataset, found: Route) -> Reply {
    let body = match found {
        Route::Ready => return Reply::text(StatusCode::OK, "Ready to receive requests"),
        Route::ApiReady => return Reply::text(StatusCode::OK, "API ready to receive requests"),
        Route::Users => return Reply::json_list(data.users_list()),
        Route::User(id) => return Reply::json_or_no_content(data.user_json(id)),
        Route::Threads => return Reply::json_list(data.threads_list()),
        Route::Thread(id) => return Reply::json_or_no_content(data.thread_json(id)),
        Route::Posts => return Reply::json_list(data.posts_list()),
        Route::PostsInThread(id) => data.posts_in_thread_json(id),
        Route::PostsByUser(id) => data.posts_by_user_json(id),
    };
    Reply::json(body)
}

/// A response before its header map is given: status, the headers the
/// servers send (in this order) and the body.
struct Reply {
    status: StatusCode,
    content_type: Option<&'static str>,
    allow: bool,
    close: bool,
    body: ResponseBody,
}

impl Reply {
    /// A 200 of `body` with its Content-Type; hyper writes the Content-Length
    /// after it from the body's exact size (also for HEAD, without the body),
    /// the order Node.js wrote them in.
    fn with_content_type(body: ResponseBody, content_type: &'static str) -> Reply {
        Reply {
            status: StatusCode::OK,
            content_type: Some(content_type),
            allow: false,
            close: false,
            body,
        }
    }

    fn json(body: Bytes) -> Reply {
        Reply::with_content_type(ResponseBody::Bytes(Some(body)), JSON_CONTENT_TYPE)
    }

    /// A whole list: a short one from its bytes written at startup, a long one
    /// written while it is sent, with its Content-Length.
    fn json_list(list: ListStream) -> Reply {
        match list.prerendered() {
            Some(body) => Reply::json(body),
            None => {
                let length = list.len();
                Reply::with_content_type(ResponseBody::List { list, length }, JSON_CONTENT_TYPE)
            }
        }
    }

    fn json_or_no_content(body: Option<Bytes>) -> Reply {
        match body {
            Some(body) => Reply::json(body),
            None => Reply::status_only(StatusCode::NO_CONTENT),
        }
    }

    fn text(status: StatusCode, body: &'static str) -> Reply {
        Reply {
            status,
            ..Reply::with_content_type(
                ResponseBody::Bytes(Some(Bytes::from_static(body.as_bytes()))),
                TEXT_CONTENT_TYPE,
            )
        }
    }

    /// A response without a body (hyper adds `content-length: 0` where HTTP
    /// allows one: not on 204, nor on a HEAD's answer).
    fn status_only(status: StatusCode) -> Reply {
        Reply {
            status,
            content_type: None,
            allow: false,
            close: false,
            body: ResponseBody::Bytes(None),
        }
    }

    /// With `Allow: HEAD, GET`.
    fn allowing(self) -> Reply {
        Reply {
            allow: true,
            ..self
        }
    }

    /// With the connection closed after it.
    fn closing(self) -> Reply {
        Reply {
            close: true,
            ..self
        }
    }

    /// The response, its headers in `headers` (emptied first; its capacity
    /// is kept).
    fn into_response(self, mut headers: HeaderMap) -> Response<ResponseBody> {
        headers.clear();
        if let Some(content_type) = self.content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        if self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        }
        if self.close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let mut response = Response::new(self.body);
        *response.status_mut() = self.status;
        *response.headers_mut() = headers;
        response
    }
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
