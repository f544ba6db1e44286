//! One request through the data plane: route, then answer or forward.

use std::net::{IpAddr, SocketAddr};

use alb::cidr::canonical_ip;
use alb::headers::{HOP_BY_HOP, is_hop_by_hop};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::Either;
use hyper::body::Incoming;

use crate::dataplane::DataPlane;
use crate::dataplane::policy::{self, HeadPolicy, XffMode};
use crate::dataplane::pool::{self, ExchangeError, PooledBody};
use crate::dataplane::responses::{self, ProxyBody, RedirectSource};
use crate::dataplane::sticky::{self, Presented};
use crate::dataplane::table::{CompiledAction, Forward, WeightedGroup, target_key};
use crate::dataplane::targets::TargetRuntime;
use crate::matcher::{RequestView, strip_port};
use crate::metrics::ElbError;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");

/// How many targets one request may try to connect to before it gets a 502.
pub(super) const MAX_CONNECT_ATTEMPTS: usize = 3;

/// Hop-by-hop headers (`alb::headers`, RFC 9110 §7.6.1), and any the
/// `Connection` header lists, are never forwarded.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names instead of a lookup
    // for each.
    if !headers.keys().any(|name| is_hop_by_hop(name.as_str())) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The host the client asked for: the Host header, else the URI authority
/// (HTTP/2).
fn request_host<B>(request: &Request<B>) -> Option<&str> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
}

impl DataPlane {
    pub(crate) async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        worker: usize,
        node: usize,
    ) -> Response<ProxyBody> {
        let tables = self.tables.load_full(node);
        let Some(table) = tables.primary() else {
            return self.elb_error(ElbError::NoListener, None);
        };
        let source_ip = canonical_ip(peer.ip());
        // AWS's refusals that apply to HTTP/2 heads as to HTTP/1 ones
        // (docs/data-plane.md): TRACE, and X-Forwarded-For over 30 addresses.
        if request.method() == http::Method::TRACE {
            return self.refused(StatusCode::METHOD_NOT_ALLOWED);
        }
        if forwarded_for_count(request.headers()) > policy::MAX_FORWARDED_FOR {
            return self.refused(StatusCode::from_u16(463).unwrap_or(StatusCode::BAD_REQUEST));
        }
        let rule = {
            let view = RequestView {
                method: request.method().as_str(),
                path: request.uri().path(),
                query: request.uri().query(),
                host: request_host(&request),
                headers: request.headers().into(),
                source_ip,
            };
            table.route(&view)
        };
        let Some(rule) = rule else {
            // Only reachable without a default rule, which ALB always has.
            return self.elb_error(ElbError::NoListener, None);
        };
        match &rule.action {
            CompiledAction::FixedResponse {
                status,
                content_type,
                body,
                counters,
            } => {
                counters.record(status.as_u16());
                responses::generated(*status, content_type, body.clone()).into_response()
            }
            CompiledAction::Redirect { template, counters } => {
                let source = RedirectSource {
                    host: request_host(&request).map_or("", strip_port),
                    listener_port: table.port,
                    path: request.uri().path(),
                    query: request.uri().query(),
                };
                let response = responses::redirect(template, &source);
                counters.record(response.status.as_u16());
                response.into_response()
            }
            CompiledAction::Forward(forward) => {
                let presented = if forward.uses_cookies() {
                    let cookies = request
                        .headers()
                        .get_all(http::header::COOKIE)
                        .iter()
                        .map(|v| v.as_bytes());
                    self.cookie_key
                        .presented(cookies, std::time::SystemTime::now())
                } else {
                    Presented::default()
                };
                let Some(picked) = forward.pick_sticky(presented) else {
                    return self.elb_error(ElbError::NoRegisteredTargets, None);
                };
                let request = prepare_upstream(request, table.port, source_ip, &tables.head);
                let exchange = self.forward(worker, request, forward, picked, presented.target);
                match tokio::time::timeout(self.options.target_timeout, exchange).await {
                    Ok(response) => response,
                    Err(_) => self.elb_error(ElbError::TargetTimeout, Some(forward.group(picked))),
                }
            }
        }
    }

    /// Sends the request to a target of the picked group. When connecting to
    /// that target fails (so the request never left), the request goes to
    /// another target of the group, then to the forward's other target
    /// groups: at most [`MAX_CONNECT_ATTEMPTS`] targets in all.
    async fn forward(
        &self,
        worker: usize,
        mut request: Request<Incoming>,
        forward: &Forward,
        picked: usize,
        prefer: Option<u64>,
    ) -> Response<ProxyBody> {
        let first = forward.group(picked);
        let started = std::time::Instant::now();
        let mut tried = [0usize; MAX_CONNECT_ATTEMPTS];
        let mut attempts = 0;
        let mut weighted = first;
        loop {
            let Some(target) =
                forward.next_target(picked, &mut weighted, &tried[..attempts], prefer)
            else {
                let error = ElbError::no_target_left(attempts);
                return self.elb_error(error, Some(first));
            };
            let Some(address) = target.address() else {
                return self.elb_error(ElbError::TargetConnectionFailed, Some(weighted));
            };
            if attempts > 0 {
                self.metrics.record_retry();
            }
            tried[attempts] = target_key(target);
            attempts += 1;
            let in_flight = target.begin_request();
            let exchanged = pool::exchange(&target.pool, address, worker, request).await;
            drop(in_flight);
            match exchanged {
                Ok((response, release)) => {
                    let status = response.status().as_u16();
                    weighted.counters.record(status);
                    if let Some(cell) = &weighted.cell {
                        cell.record_target(worker, status, started.elapsed());
                    }
                    let (mut parts, body) = response.into_parts();
                    remove_hop_by_hop(&mut parts.headers);
                    let cookies = forward.cookie_lines(&self.cookie_key, weighted, target);
                    for value in sticky::set_cookie_values(&cookies) {
                        if let Ok(value) = http::HeaderValue::from_str(value) {
                            parts.headers.append(http::header::SET_COOKIE, value);
                        }
                    }
                    let body = PooledBody::new(body, release);
                    return Response::from_parts(parts, Either::Left(body));
                }
                Err(ExchangeError::NotSent(unsent, error)) => {
                    target.connection_failed(&error);
                    if attempts == MAX_CONNECT_ATTEMPTS {
                        return self.elb_error(ElbError::TargetConnectionFailed, Some(weighted));
                    }
                    request = *unsent;
                }
                Err(ExchangeError::Failed(error)) => {
                    tracing::debug!("forwarding to {}: {error}", address_label(target));
                    return self.elb_error(ElbError::TargetConnectionError, Some(weighted));
                }
            }
        }
    }

    /// The load balancer's own refusal of a request, counted as its answer.
    fn refused(&self, status: StatusCode) -> Response<ProxyBody> {
        self.record_elb_answer(status.as_u16(), None, false);
        responses::error_page(status).into_response()
    }

    fn elb_error(&self, error: ElbError, group: Option<&WeightedGroup>) -> Response<ProxyBody> {
        self.elb_error_page(error, group).into_response()
    }

    /// Records an error the load balancer answers itself and makes its page.
    pub(crate) fn elb_error_page(
        &self,
        error: ElbError,
        group: Option<&WeightedGroup>,
    ) -> responses::Generated {
        self.metrics.record_elb_error(error);
        let status: StatusCode = error.status();
        if let Some(group) = group {
            group.counters.record(status.as_u16());
        }
        // A target was chosen unless there was none (or no listener).
        let target_chosen = !matches!(error, ElbError::NoRegisteredTargets | ElbError::NoListener);
        self.record_elb_answer(status.as_u16(), group, target_chosen);
        responses::error_page(status)
    }

    /// Counts an answer of the load balancer itself for CloudWatch: in the
    /// target group's cell when the request was routed to one, else in the
    /// load balancer's own cell. (Errors are rare: the shard of worker 0
    /// takes them all.)
    pub(crate) fn record_elb_answer(
        &self,
        status: u16,
        group: Option<&WeightedGroup>,
        target_chosen: bool,
    ) {
        match group.and_then(|g| g.cell.as_ref()) {
            Some(cell) => cell.record_elb(0, status, target_chosen),
            None => {
                let tables = self.tables.latest();
                if let Some(cell) = tables.primary().and_then(|t| t.load_balancer_cell.as_ref()) {
                    cell.record_elb(0, status, target_chosen);
                }
            }
        }
    }
}

/// How many addresses the `X-Forwarded-For` values list.
fn forwarded_for_count(headers: &HeaderMap) -> usize {
    headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .map(|value| {
            value
                .as_bytes()
                .split(|b| *b == b',')
                .filter(|token| !token.trim_ascii().is_empty())
                .count()
        })
        .sum()
}

/// The request as the target gets it: origin-form URI, hop-by-hop headers
/// removed, `Host` kept (from the URI for HTTP/2), the `X-Forwarded-*` and
/// `X-Amzn-Trace-Id` headers added, as the head policy says
/// (`X-Forwarded-For` mode, invalid header names dropped).
fn prepare_upstream(
    request: Request<Incoming>,
    port: u16,
    source_ip: IpAddr,
    head: &HeadPolicy,
) -> Request<Incoming> {
    let (mut parts, body) = request.into_parts();
    let original_authority = parts.uri.authority().cloned();
    if parts.uri.scheme().is_some() || original_authority.is_some() {
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.uri = Uri::from(path_and_query);
    }
    let headers = &mut parts.headers;
    remove_hop_by_hop(headers);
    if !headers.contains_key(header::HOST)
        && let Some(authority) = original_authority
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, host);
    }
    if head.drop_invalid_header_fields {
        let invalid: Vec<HeaderName> = headers
            .keys()
            .filter(|name| !policy::is_valid_header_name(name.as_str()))
            .cloned()
            .collect();
        for name in invalid {
            headers.remove(name);
        }
    }
    match head.xff {
        XffMode::Append => add_forwarded_for(headers, source_ip),
        XffMode::Preserve => {}
        XffMode::Remove => {
            headers.remove(&X_FORWARDED_FOR);
        }
    }
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    headers.insert(&X_FORWARDED_PORT, HeaderValue::from(port));
    let trace = responses::trace_header(headers.get(&X_AMZN_TRACE_ID));
    headers.insert(&X_AMZN_TRACE_ID, trace);
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, body)
}

/// `host:port` of a target, for log lines.
fn address_label(target: &TargetRuntime) -> String {
    format!("{}:{}", target.target.id, target.target.port)
}

/// Appends the client address to `X-Forwarded-For` (all existing values
/// joined in order).
fn add_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let mut value = String::new();
    for existing in headers.get_all(&X_FORWARDED_FOR) {
        if let Ok(existing) = existing.to_str() {
            value.push_str(existing);
            value.push_str(", ");
        }
    }
    value.push_str(&client.to_string());
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(&X_FORWARDED_FOR, value);
    }
}
