//! Small HTTP servers for the parity tests: a forum-like baseline and
//! candidates that answer differently on purpose.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Response as HttpResponse};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What a test server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    pub fn json(body: String) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type", "application/json; charset=utf-8".into())],
            body: body.into_bytes(),
            delay: Duration::ZERO,
        }
    }

    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type", "text/plain; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }

    pub fn no_content() -> Self {
        Self {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }
}

pub type Handler = Arc<dyn Fn(&Method, &str) -> Reply + Send + Sync>;

/// Serves `handler` on a free port of 127.0.0.1 until the test ends; returns
/// the base URL.
pub async fn serve(handler: Handler) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let handler = Arc::clone(&handler);
                    async move {
                        let target = request
                            .uri()
                            .path_and_query()
                            .map_or("/".to_owned(), |target| target.as_str().to_owned());
                        let reply = handler(request.method(), &target);
                        if !reply.delay.is_zero() {
                            tokio::time::sleep(reply.delay).await;
                        }
                        let body = if request.method() == Method::HEAD {
                            Vec::new()
                        } else {
                            reply.body
                        };
                        let mut response = HttpResponse::builder().status(reply.status);
                        for (name, value) in reply.headers {
                            response = response.header(name, value);
                        }
                        Ok::<_, Infallible>(
                            response
                                .body(Full::new(Bytes::from(body)))
                                .expect("valid response"),
                        )
                    }
                });
                // No Date header: reports do not depend on the second they run in.
                let _ = http1::Builder::new()
                    .auto_date_header(false)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{address}")
}

pub const USERS: &[(u64, &str, &str)] = &[
    (1, "marceline", "Marceline Abadeer"),
    (2, "finn", "Finn 'the Human' Mertens"),
    (3, "pb", "Bonnibel Bubblegum"),
    (4, "jake", "Jake the Dog"),
];

pub fn user_json(id: u64, username: &str, name: &str) -> String {
    format!(r#"{{"id":{id},"username":"{username}","name":"{name}"}}"#)
}

pub fn users_json(order: &[usize]) -> String {
    let users: Vec<String> = order
        .iter()
        .map(|&index| {
            let (id, username, name) = USERS[index];
            user_json(id, username, name)
        })
        .collect();
    format!("[{}]", users.join(","))
}

/// A forum-like monolith: `/api/users`, `/api/users/:id` (204 when unknown),
/// `/` as text, 404 otherwise.
pub fn forum(method: &Method, target: &str) -> Reply {
    let path = target.split('?').next().unwrap_or("");
    if method != Method::GET && method != Method::HEAD {
        return Reply::text(405, "Method Not Allowed");
    }
    match path {
        "/" => Reply::text(200, "Ready to receive requests"),
        "/api/users" => Reply::json(users_json(&[0, 1, 2, 3])),
        _ => match path.strip_prefix("/api/users/") {
            Some(id) => match USERS.iter().find(|(user, _, _)| id.parse() == Ok(*user)) {
                Some(&(id, username, name)) => Reply::json(user_json(id, username, name)),
                None => Reply::no_content(),
            },
            None => Reply::text(404, "Not Found"),
        },
    }
}

pub async fn serve_forum() -> String {
    serve(Arc::new(forum)).await
}
