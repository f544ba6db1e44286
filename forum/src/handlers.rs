//! The one request handler every service runs: route, look up, answer, log.

use std::time::Instant;

use actix_web::body::{None as NoBody, SizedStream};
use actix_web::http::ConnectionType;
use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};

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
    /// How long a request body may go without a byte (`client_timeout`).
    pub client_timeout: std::time::Duration,
}

/// The default service of every server: answers any request and logs it.
pub async fn handle_request(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let started = Instant::now();
    let response = if request.method() == actix_web::http::Method::CONNECT {
        // A CONNECT's "body" is a tunnel that never ends: answer (the router
        // says 501) and close, never wait for it.
        let mut response = respond(&state, request.method().as_str(), request.uri().path());
        response
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        response
    } else if discard(body, state.client_timeout).await {
        respond(&state, request.method().as_str(), request.uri().path())
    } else {
        // A body stalled for the client timeout: 408, and the connection
        // closes (what is left of the body is never read).
        let mut response = HttpResponse::RequestTimeout().finish();
        response
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        response
    };
    request_log::log(&request_log::Entry {
        method: request.method().as_str(),
        target: &request_target(request.uri()),
        status: response.status().as_u16(),
        duration: started.elapsed(),
    });
    response
}

/// The request target as the request line gave it (`Uri`'s Display), without
/// allocating for the usual origin form (`/path?query`).
fn request_target(uri: &actix_web::http::Uri) -> std::borrow::Cow<'_, str> {
    match uri.path_and_query() {
        Some(target) if uri.scheme().is_none() && uri.authority().is_none() => {
            target.as_str().into()
        }
        _ => uri.to_string().into(),
    }
}

/// Reads and drops a request body, as Node.js does, so that the connection can
/// serve the next request (actix-web closes it when a body is left unread).
/// False when it stalled: no byte came for `stall`.
async fn discard(mut body: web::Payload, stall: std::time::Duration) -> bool {
    loop {
        let mut next = body.next();
        // Most requests have no body, and the first poll says so: no timer
        // (nor clock read) for them.
        let chunk = match (&mut next).now_or_never() {
            Some(chunk) => chunk,
            None => match tokio::time::timeout(stall, next).await {
                Ok(chunk) => chunk,
                Err(_) => return false,
            },
        };
        match chunk {
            Some(Ok(_chunk)) => {}
            Some(Err(_)) | None => return true,
        }
    }
}

/// The response to `method` on `raw_path` (HEAD is answered as GET; actix-web
/// drops the body and keeps the headers, Content-Length included), except a
/// HEAD that answers 404: the original never sets that body, so it carries no
/// Content-Type and no Content-Length.
pub fn respond(state: &AppState, method: &str, raw_path: &str) -> HttpResponse {
    match route(&state.service, method, raw_path) {
        RouteMatch::Get(found) => serve(&state.data, found),
        RouteMatch::Options => with_allow(HttpResponse::NoContent().finish()),
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
        RouteMatch::NotFound if method == "HEAD" => HttpResponse::NotFound().body(NoBody::new()),
        RouteMatch::NotFound => text(StatusCode::NOT_FOUND, "Not Found"),
        RouteMatch::BadRequest => HttpResponse::BadRequest().force_close().body(NoBody::new()),
    }
}

fn serve(data: &Dataset, found: Route) -> HttpResponse {
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
fn json_list(list: ListStream) -> HttpResponse {
    if let Some(body) = list.prerendered() {
        return json(body);
    }
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE)))
        .body(SizedStream::new(list.len(), list))
}

fn json_or_no_content(body: Option<Bytes>) -> HttpResponse {
    match body {
        Some(body) => json(body),
        None => HttpResponse::NoContent().finish(),
    }
}

fn json(body: Bytes) -> HttpResponse {
    with_content_type(StatusCode::OK, body, JSON_CONTENT_TYPE)
}

fn text(status: StatusCode, body: &'static str) -> HttpResponse {
    with_content_type(
        status,
        Bytes::from_static(body.as_bytes()),
        TEXT_CONTENT_TYPE,
    )
}

/// A response of `body` with its Content-Type, built straight into the
/// response head: no builder, no header conversion (`Bytes` stays unboxed in
/// the body; Content-Length comes from its size).
fn with_content_type(status: StatusCode, body: Bytes, content_type: &'static str) -> HttpResponse {
    let mut response = HttpResponse::with_body(status, body).map_into_boxed_body();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn with_allow(mut response: HttpResponse) -> HttpResponse {
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
    response
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
