//! The control plane: the ELBv2 Query API (Version 2015-12-01) and `/metrics`
//! on the control listener.
//!
//! Every request must be signed with AWS Signature Version 4. Each accepted
//! change goes: clone the state, apply, validate, persist, swap in, publish to
//! the data plane, answer. A change that cannot be persisted is answered with
//! an error and leaves the old state in place.

pub mod actions;
mod cloudwatch_query;
pub mod error;
pub mod form;
mod parse;
mod render;
pub mod validate;
pub mod xml;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use self::actions::Handler;
use self::error::ApiError;
use self::form::Form;
use crate::cloudwatch::{
    self,
    api::{CloudWatchError, Protocol},
};
use crate::dataplane::DataPlane;
use crate::faults::{Api, Faults};
use crate::model::State;
use crate::persist::StateStore;
use crate::sigv4::{AuthError, Credentials, SignedRequest, Verifier};

/// The API version this control plane speaks.
pub const API_VERSION: &str = "2015-12-01";
/// The SigV4 service name requests must be signed for.
pub const SIGNING_SERVICE: &str = "elasticloadbalancing";
/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 1 << 20;
/// How long connections may take to finish after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The configuration owner: holds the state, persists and publishes changes.
pub struct ControlPlane {
    state: Mutex<State>,
    store: StateStore,
    dataplane: Arc<DataPlane>,
    credentials: Credentials,
    region: String,
    /// Injected throttling and transient errors (`faults.rs`; off by default).
    faults: Faults,
}

type HttpResponse = Response<Full<Bytes>>;

impl ControlPlane {
    /// `state` must already be persisted in `store`. Requests are verified
    /// against `credentials` for `region`.
    pub fn new(
        state: State,
        store: StateStore,
        dataplane: Arc<DataPlane>,
        credentials: Credentials,
        region: String,
        faults: Faults,
    ) -> Arc<ControlPlane> {
        Arc::new(ControlPlane {
            state: Mutex::new(state),
            store,
            dataplane,
            credentials,
            region,
            faults,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only ever replaced whole, so a panic elsewhere cannot
        // leave it half-changed; a poisoned lock is safe to use.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of the current configuration (the fuzz tests read its ARNs).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn state(&self) -> State {
        self.lock().clone()
    }

    /// Serves the control listener until `shutdown` resolves, then lets open
    /// connections finish (for a few seconds at most).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::warn!(%error, "control listener: accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let this = Arc::clone(&self);
                    let service = service_fn(move |request| {
                        let this = Arc::clone(&this);
                        async move { Ok::<_, Infallible>(this.handle(request, peer).await) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%error, %peer, "control connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(SHUTDOWN_GRACE) => {
                tracing::warn!("control listener: connections still open after the grace period");
            }
        }
        Ok(())
    }

    async fn handle(
        self: Arc<Self>,
        request: http::Request<Incoming>,
        peer: SocketAddr,
    ) -> HttpResponse {
        let request_id = uuid::Uuid::new_v4().to_string();
        let (parts, body) = request.into_parts();
        let path = parts.uri.path();
        if path == "/metrics" {
            return self.metrics_page(&parts.method);
        }
        if let Some(operation) = path.strip_prefix(cloudwatch::RPC_PATH_PREFIX) {
            let operation = operation.to_owned();
            return self
                .handle_cloudwatch(Protocol::Cbor, &operation, parts, body, peer, &request_id)
                .await;
        }
        let json_target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix(cloudwatch::JSON_TARGET_PREFIX))
            .map(str::to_owned);
        if let Some(operation) = json_target {
            return self
                .handle_cloudwatch(Protocol::Json, &operation, parts, body, peer, &request_id)
                .await;
        }
        if path != "/" || (parts.method != Method::POST && parts.method != Method::GET) {
            return plain(
                StatusCode::NOT_FOUND,
                "not found: the ELBv2 Query API is POST / (form-encoded); metrics are GET /metrics\n"
                    .to_owned(),
            )
            .unwrap_or_else(fallback_response);
        }
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                let error = ApiError::validation(format!(
                    "The request body could not be read or is larger than {MAX_BODY_BYTES} bytes: {error}"
                ));
                return api_error_response(&error, &request_id);
            }
        };
        let query = parts.uri.query().unwrap_or_default();
        let mut form = Form::parse(&body);
        form.extend(Form::parse(query.as_bytes()));
        if form.get("Version") == Some(cloudwatch_query::VERSION) {
            return self
                .handle_cloudwatch_query(&parts, &body, peer, &request_id)
                .await;
        }
        let signed = SignedRequest {
            method: parts.method.as_str(),
            path,
            query,
            headers: &parts.headers,
            body: &body,
        };
        self.handle_elbv2(&signed, form, peer, &request_id).await
    }

    /// An ELBv2 Query API request: signature, injected faults, the action
    /// (off the async threads), its answer.
    async fn handle_elbv2(
        self: Arc<Self>,
        signed: &SignedRequest<'_>,
        form: Form,
        peer: SocketAddr,
        request_id: &str,
    ) -> HttpResponse {
        let verifier = Verifier {
            credentials: &self.credentials,
            region: &self.region,
            service: SIGNING_SERVICE,
        };
        if let Err(auth) = verifier.verify(signed, time::OffsetDateTime::now_utc()) {
            tracing::info!(%peer, code = auth.code(), %request_id, "control request refused");
            return api_error_response(&auth_error(&auth), request_id);
        }
        let action_name = form.get("Action").unwrap_or_default().to_owned();
        if self.faults.throttled(Api::Elbv2, &action_name) {
            tracing::info!(action = %action_name, %request_id, "control request throttled (injected)");
            return api_error_response(&ApiError::throttling(), request_id);
        }
        let write = matches!(actions::handler(&action_name), Some(Handler::Write(_)));
        let transient = self.faults.transient(Api::Elbv2, &action_name, write);
        if let Some(injected) = transient.filter(|t| !t.after_apply) {
            tracing::info!(action = %action_name, status = injected.status, %request_id, "transient error before the action (injected)");
            return api_error_response(&ApiError::transient(injected.status), request_id);
        }
        let (action, result) = match self.clone().run_action(form, request_id).await {
            Ok(done) => done,
            Err(response) => return response,
        };
        if let Some(injected) = transient {
            // The write ran (or was refused); its answer is lost. The log and
            // `/metrics` say the same: applied when it was accepted.
            let applied = result.is_ok();
            self.faults
                .answer_lost(Api::Elbv2, &action_name, injected, applied);
            tracing::info!(%action, status = injected.status, applied, %request_id, "transient error after the action (injected)");
            return api_error_response(&ApiError::transient(injected.status), request_id);
        }
        action_response(&action, result, request_id)
    }

    /// Runs the form's action on a blocking thread: the action's name and
    /// result, or the answer when there was no action to run.
    async fn run_action(
        self: Arc<Self>,
        form: Form,
        request_id: &str,
    ) -> Result<(String, Result<String, ApiError>), HttpResponse> {
        let rid = request_id.to_owned();
        let outcome = tokio::task::spawn_blocking(move || {
            let action = form.required("Action")?.to_owned();
            let result = self.execute(&action, &form, &rid);
            Ok::<_, ApiError>((action, result))
        })
        .await;
        match outcome {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(missing_action)) => Err(api_error_response(&missing_action, request_id)),
            Err(join_error) => {
                tracing::error!(%join_error, %request_id, "control action failed unexpectedly");
                Err(api_error_response(
                    &ApiError::internal("The action failed unexpectedly; nothing was changed"),
                    request_id,
                ))
            }
        }
    }

    /// `GET /metrics`: the data plane's counters as Prometheus text.
    fn metrics_page(&self, method: &Method) -> HttpResponse {
        if *method == Method::GET || *method == Method::HEAD {
            let mut text = self.dataplane.render_metrics();
            self.faults.render(&mut text);
            plain(StatusCode::OK, text)
                .map(|mut r| {
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static(
                            "text/plain; version=0.0.4; charset=utf-8",
                        ),
                    );
                    r
                })
                .unwrap_or_else(fallback_response)
        } else {
            plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "use GET /metrics\n".to_owned(),
            )
            .unwrap_or_else(fallback_response)
        }
    }

    /// A CloudWatch operation over Smithy RPC v2 CBOR or AWS JSON 1.0:
    /// signed for `monitoring`, answered from the data plane's counters.
    async fn handle_cloudwatch(
        &self,
        protocol: Protocol,
        operation: &str,
        parts: http::request::Parts,
        body: Incoming,
        peer: SocketAddr,
        request_id: &str,
    ) -> HttpResponse {
        if parts.method != Method::POST {
            let error = CloudWatchError::serialization(format!(
                "CloudWatch operations are POSTed, not sent with {}",
                parts.method
            ));
            return cloudwatch_error_response(protocol, &error, request_id);
        }
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                let error = CloudWatchError::serialization(format!(
                    "The request body could not be read or is larger than {MAX_BODY_BYTES} bytes: {error}"
                ));
                return cloudwatch_error_response(protocol, &error, request_id);
            }
        };
        let signed = SignedRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or_default(),
            headers: &parts.headers,
            body: &body,
        };
        let verifier = Verifier {
            credentials: &self.credentials,
            region: &self.region,
            service: cloudwatch::SIGNING_SERVICE,
        };
        if let Err(auth) = verifier.verify(&signed, time::OffsetDateTime::now_utc()) {
            tracing::info!(%peer, code = auth.code(), %request_id, "CloudWatch request refused");
            let error = CloudWatchError::forbidden(auth.code(), auth.to_string());
            return cloudwatch_error_response(protocol, &error, request_id);
        }
        if let Some(error) = self.cloudwatch_fault(operation) {
            return cloudwatch_error_response(protocol, &error, request_id);
        }
        let dataplane = Arc::clone(&self.dataplane);
        let operation_name = operation.to_owned();
        let answered = tokio::task::spawn_blocking(move || {
            cloudwatch::api::handle(dataplane.cloudwatch(), protocol, &operation_name, &body)
        })
        .await
        .unwrap_or_else(|join_error| {
            tracing::error!(%join_error, %request_id, "CloudWatch operation failed unexpectedly");
            Err(CloudWatchError::internal(
                "The operation failed unexpectedly",
            ))
        });
        match answered {
            Ok(answer) => {
                tracing::debug!(%operation, %request_id, "CloudWatch operation answered");
                cloudwatch_response(protocol, StatusCode::OK, answer, request_id)
            }
            Err(error) => {
                tracing::info!(%operation, code = error.code, message = %error.message, %request_id, "CloudWatch operation refused");
                cloudwatch_error_response(protocol, &error, request_id)
            }
        }
    }

    /// CloudWatch's Query API form (`Version=2010-08-01`): signed for
    /// `monitoring`, answered in XML.
    async fn handle_cloudwatch_query(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        peer: SocketAddr,
        request_id: &str,
    ) -> HttpResponse {
        let query = parts.uri.query().unwrap_or_default();
        let signed = SignedRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query,
            headers: &parts.headers,
            body,
        };
        let verifier = Verifier {
            credentials: &self.credentials,
            region: &self.region,
            service: cloudwatch::SIGNING_SERVICE,
        };
        let answered = match verifier.verify(&signed, time::OffsetDateTime::now_utc()) {
            Err(auth) => {
                tracing::info!(%peer, code = auth.code(), %request_id, "CloudWatch request refused");
                Err(CloudWatchError::forbidden(auth.code(), auth.to_string()))
            }
            Ok(()) => {
                let mut pairs: Vec<(String, String)> =
                    form_urlencoded::parse(body).into_owned().collect();
                pairs.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
                let action = pairs
                    .iter()
                    .find(|(k, _)| k == "Action")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                if let Some(error) = self.cloudwatch_fault(&action) {
                    return xml_response(
                        StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST),
                        cloudwatch_query::error(&error, request_id),
                        request_id,
                    );
                }
                let dataplane = Arc::clone(&self.dataplane);
                let rid = request_id.to_owned();
                tokio::task::spawn_blocking(move || {
                    cloudwatch_query::input(&pairs)
                        .and_then(|input| {
                            cloudwatch::api::answer(dataplane.cloudwatch(), &action, &input)
                        })
                        .map(|output| cloudwatch_query::success(&action, &output, &rid))
                })
                .await
                .unwrap_or_else(|join_error| {
                    tracing::error!(%join_error, %request_id, "CloudWatch operation failed unexpectedly");
                    Err(CloudWatchError::internal("The operation failed unexpectedly"))
                })
            }
        };
        match answered {
            Ok(document) => xml_response(StatusCode::OK, document, request_id),
            Err(error) => {
                tracing::info!(code = error.code, message = %error.message, %request_id, "CloudWatch operation refused");
                xml_response(
                    StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST),
                    cloudwatch_query::error(&error, request_id),
                    request_id,
                )
            }
        }
    }

    /// The injected fault for a CloudWatch `operation`, if any (CloudWatch
    /// has reads only, so no answer is ever lost after a change).
    fn cloudwatch_fault(&self, operation: &str) -> Option<CloudWatchError> {
        if self.faults.throttled(Api::CloudWatch, operation) {
            return Some(CloudWatchError::throttling());
        }
        self.faults
            .transient(Api::CloudWatch, operation, false)
            .map(|injected| CloudWatchError::transient(injected.status))
    }

    /// Runs one API action; a change is persisted and published before this
    /// returns its answer.
    pub fn execute(&self, action: &str, form: &Form, request_id: &str) -> Result<String, ApiError> {
        let version = form.required("Version")?;
        if version != API_VERSION {
            return Err(ApiError::validation(format!(
                "Version '{version}' is not supported: use {API_VERSION}"
            )));
        }
        let handler = actions::handler(action).ok_or_else(|| ApiError::invalid_action(action))?;
        let request = actions::Request {
            action,
            form,
            request_id,
            dataplane: &self.dataplane,
        };
        let mut current = self.lock();
        match handler {
            Handler::Read(read) => read(&current, &request),
            Handler::Write(write) => {
                let mut next = current.clone();
                let answer = write(&mut next, &request)?;
                if next != *current {
                    validate::state(&next)?;
                    self.store.save(&next).map_err(|e| {
                        tracing::error!(error = %e, "could not persist a change; it was not applied");
                        ApiError::internal(format!("The change was not applied: {e}"))
                    })?;
                    *current = next;
                    self.dataplane.publish(&current);
                }
                Ok(answer)
            }
        }
    }
}

fn auth_error(auth: &AuthError) -> ApiError {
    ApiError::forbidden(auth.code(), auth.to_string())
}

fn plain(status: StatusCode, text: String) -> Option<HttpResponse> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text)))
        .ok()
}

fn xml_response(status: StatusCode, body: String, request_id: &str) -> HttpResponse {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/xml")
        .header("x-amzn-requestid", request_id)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| fallback_response())
}

/// A CloudWatch answer (RPC v2 CBOR or AWS JSON 1.0).
fn cloudwatch_response(
    protocol: Protocol,
    status: StatusCode,
    body: Vec<u8>,
    request_id: &str,
) -> HttpResponse {
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, protocol.content_type())
        .header("x-amzn-requestid", request_id);
    if protocol == Protocol::Cbor {
        builder = builder.header("smithy-protocol", "rpc-v2-cbor");
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| fallback_response())
}

/// A CloudWatch error: `{"__type", "message"}`, with the Query API code in
/// `x-amzn-query-error` (CloudWatch is `awsQueryCompatible`).
fn cloudwatch_error_response(
    protocol: Protocol,
    error: &CloudWatchError,
    request_id: &str,
) -> HttpResponse {
    let mut response = cloudwatch_response(
        protocol,
        StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST),
        error.body(protocol),
        request_id,
    );
    if let Ok(value) = header::HeaderValue::from_str(&format!("{};{}", error.code, error.fault())) {
        response.headers_mut().insert("x-amzn-query-error", value);
    }
    response
}

/// An action's answer, logged: changes a line each at info; reads (polled
/// by tools) at debug.
fn action_response(
    action: &str,
    result: Result<String, ApiError>,
    request_id: &str,
) -> HttpResponse {
    match result {
        Ok(body) => {
            if action.starts_with("Describe") {
                tracing::debug!(%action, %request_id, "control action answered");
            } else {
                tracing::info!(%action, %request_id, "control action accepted");
            }
            xml_response(StatusCode::OK, body, request_id)
        }
        Err(error) => {
            tracing::info!(%action, code = error.code, message = %error.message, %request_id, "control action refused");
            api_error_response(&error, request_id)
        }
    }
}

fn api_error_response(error: &ApiError, request_id: &str) -> HttpResponse {
    xml_response(error.status, xml::error(error, request_id), request_id)
}

fn fallback_response() -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}
