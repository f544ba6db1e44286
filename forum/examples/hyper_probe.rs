//! Issue 19, phase 1: the forum's answers on hyper 1's HTTP/1 server, to
//! compare its CPU per request with the actix server's before porting.
//! `hyper_probe --port PORT` serves the monolith's routes on 127.0.0.1 (the same
//! prerendered bytes and request-log line) with one tokio runtime, one worker
//! per core.

use std::convert::Infallible;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use forum::handlers::JSON_CONTENT_TYPE;
use forum::router::{Route, RouteMatch, route};
use forum::settings::LogFormat;
use forum::{Dataset, MONOLITH, request_log, telemetry};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args
        .iter()
        .position(|arg| arg == "--port")
        .and_then(|at| args.get(at + 1))
        .map_or(0, |port| port.parse().expect("--port takes a number"));
    let _guard = telemetry::init(LogFormat::Text);
    let data: &'static Dataset = Box::leak(Box::new(Dataset::builtin()));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    // HYPER_PROBE_RUNTIME=per-core: one current-thread runtime per core, the
    // accepted connections handed out in turn (as actix and the local ALB do).
    let per_core = std::env::var("HYPER_PROBE_RUNTIME").as_deref() == Ok("per-core");
    // HYPER_PROBE_WRITEV=0: head and body copied into one buffer, one send.
    let writev = std::env::var("HYPER_PROBE_WRITEV").as_deref() != Ok("0");
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    tracing::info!("listening on {}", listener.local_addr().unwrap());
    if per_core {
        let mut hand_over = Vec::new();
        for _ in 0..workers {
            let (sender, mut accepted) =
                tokio::sync::mpsc::unbounded_channel::<std::net::TcpStream>();
            hand_over.push(sender);
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async move {
                        while let Some(stream) = accepted.recv().await {
                            let stream = tokio::net::TcpStream::from_std(stream).unwrap();
                            tokio::spawn(serve(data, stream, writev));
                        }
                    });
            });
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let mut next = 0;
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    next = (next + 1) % hand_over.len();
                    let _ = hand_over[next].send(stream.into_std().unwrap());
                }
            });
    } else {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(data, stream, writev));
            }
        });
    }
}

async fn serve(data: &'static Dataset, stream: tokio::net::TcpStream, writev: bool) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |request| {
        std::future::ready(Ok::<_, Infallible>(answer(data, request)))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .writev(writev)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

fn answer(data: &Dataset, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let body = match route(&MONOLITH, request.method().as_str(), request.uri().path()) {
        RouteMatch::Get(Route::Thread(id)) => data.thread_json(id),
        RouteMatch::Get(Route::User(id)) => data.user_json(id),
        RouteMatch::Get(Route::Ready) => Some(Bytes::from_static(b"Ready to receive requests")),
        _ => None,
    };
    let response = match body {
        Some(body) => {
            let mut response = Response::new(Full::new(body));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
            response
        }
        None => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
    };
    let uri = request.uri();
    let target = match uri.path_and_query() {
        Some(target) if uri.scheme().is_none() => target.as_str().into(),
        _ => std::borrow::Cow::Owned(uri.to_string()),
    };
    request_log::log(&request_log::Entry {
        method: request.method().as_str(),
        target: &target,
        status: response.status().as_u16(),
        duration: started.elapsed(),
    });
    response
}
