//! Helpers for the control-plane and persistence tests: a local ALB started
//! in-process on free ports, an SDK client for it, signed raw requests, and the
//! real binary.
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aws_sdk_elasticloadbalancingv2 as elbv2;
use local_alb::Application;
use local_alb::settings::Settings;

/// The repository's stack file.
pub fn stack_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../local/stack.toml")
}

/// An access key pair, as a client signs with it.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The credentials the stack file declares (`[credentials]`).
pub fn stack_credentials() -> Credentials {
    let text = std::fs::read_to_string(stack_path()).expect("stack file is readable");
    let stack: toml::Table = toml::from_str(&text).expect("the stack file is TOML");
    let key = |name: &str| {
        stack["credentials"][name]
            .as_str()
            .unwrap_or_else(|| panic!("the stack file has credentials.{name}"))
            .to_owned()
    };
    Credentials {
        access_key_id: key("access_key_id"),
        secret_access_key: key("secret_access_key"),
    }
}

pub const REGION: &str = "us-east-1";

/// A local ALB running in this process until [`RunningAlb::stop`].
pub struct RunningAlb {
    pub control_url: String,
    pub data_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _owned_dir: Option<tempfile::TempDir>,
}

impl RunningAlb {
    /// Starts from the repository's stack file with a fresh state directory.
    pub async fn start() -> RunningAlb {
        let dir = tempfile::tempdir().expect("temporary state dir");
        let mut alb = RunningAlb::start_with(settings_for(dir.path())).await;
        alb._owned_dir = Some(dir);
        alb
    }

    /// Starts with `settings` (which must succeed).
    pub async fn start_with(settings: Settings) -> RunningAlb {
        let app = Application::build(settings)
            .await
            .expect("the local ALB starts");
        let control_url = format!("http://{}", app.control_address());
        let data_url = format!("http://{}", app.data_address());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        RunningAlb {
            control_url,
            data_url,
            stop: Some(stop),
            task,
            _owned_dir: None,
        }
    }

    pub async fn client(&self) -> elbv2::Client {
        sdk_client(&self.control_url).await
    }

    /// Starts as [`RunningAlb::start`] does; also an SDK client for it and the
    /// stack's ARNs as the SDK reports them.
    pub async fn start_with_arns() -> (RunningAlb, elbv2::Client, StackArns) {
        let alb = RunningAlb::start().await;
        let client = alb.client().await;
        let arns = stack_arns(&client).await;
        (alb, client, arns)
    }

    /// Stops gracefully and waits until both listeners are closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = std::mem::replace(&mut self.task, tokio::spawn(async { Ok(()) }));
        task.await
            .expect("server task")
            .expect("server stopped cleanly");
    }
}

impl Drop for RunningAlb {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Settings using the repository's stack file and `state_dir`, free ports.
pub fn settings_for(state_dir: &Path) -> Settings {
    let mut settings = Settings::on_free_ports(state_dir);
    settings.stack = Some(stack_path());
    settings
}

/// The SDK's configuration for `control_url` with the stack's credentials,
/// as `migrate` builds it: only the endpoint differs from AWS.
pub async fn sdk_config(control_url: &str) -> aws_config::SdkConfig {
    let credentials = stack_credentials();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(control_url)
        .credentials_provider(aws_credential_types::Credentials::new(
            credentials.access_key_id,
            credentials.secret_access_key,
            None,
            None,
            "ficus-local-stack",
        ))
        .load()
        .await
}

/// The official SDK pointed at `control_url` with the stack's credentials.
pub async fn sdk_client(control_url: &str) -> elbv2::Client {
    elbv2::Client::new(&sdk_config(control_url).await)
}

/// An answer of the control API.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub request_id: Option<String>,
    pub body: String,
}

impl Answer {
    /// The text of the first `<tag>` element.
    pub fn element(&self, tag: &str) -> Option<&str> {
        let open = format!("<{tag}>");
        let start = self.body.find(&open)? + open.len();
        let end = self.body[start..].find(&format!("</{tag}>"))? + start;
        Some(&self.body[start..end])
    }
}

/// POSTs form `params` to the control API, signed by the official SigV4
/// signer with `credentials` (the stack's when `None`).
pub async fn signed_post(
    control_url: &str,
    params: &[(&str, &str)],
    credentials: Option<Credentials>,
) -> Answer {
    let credentials = credentials.unwrap_or_else(stack_credentials);
    let body = form_body(params);
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("{control_url}/"))
        .header("host", control_url.trim_start_matches("http://"))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(body.clone())
        .expect("request");
    sign(&mut request, &credentials, SystemTime::now());
    send(request).await
}

/// The form encoding of `params`.
pub fn form_body(params: &[(&str, &str)]) -> String {
    let mut encoder = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        encoder.append_pair(k, v);
    }
    encoder.finish()
}

/// Signs `request` in place with AWS's own SigV4 implementation, for the
/// ELBv2 API (`elasticloadbalancing`).
pub fn sign(request: &mut http::Request<String>, credentials: &Credentials, at: SystemTime) {
    sign_for("elasticloadbalancing", request, credentials, at);
}

/// Signs `request` in place for the SigV4 `service` (`monitoring` is
/// CloudWatch).
pub fn sign_for<B: AsRef<[u8]>>(
    service: &str,
    request: &mut http::Request<B>,
    credentials: &Credentials,
    at: SystemTime,
) {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let identity = aws_credential_types::Credentials::new(
        &credentials.access_key_id,
        &credentials.secret_access_key,
        None,
        None,
        "test",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(service)
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let uri = request.uri().to_string();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let body = request.body().as_ref().to_vec();
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(&body),
    )
    .expect("signable request");
    let (instructions, _signature) = sign(signable, &params)
        .expect("signing succeeds")
        .into_parts();
    instructions.apply_to_request_http1x(request);
}

/// Sends `request` as is.
pub async fn send(request: http::Request<String>) -> Answer {
    let client = reqwest::Client::new();
    let (parts, body) = request.into_parts();
    let mut builder = client.request(parts.method, parts.uri.to_string());
    for (name, value) in &parts.headers {
        if name != "host" {
            builder = builder.header(name, value);
        }
    }
    let response = builder
        .body(body)
        .send()
        .await
        .expect("control API answers");
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-amzn-requestid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await.expect("answer body");
    Answer {
        status,
        request_id,
        body,
    }
}

/// Arguments for the AWS CLI pointed at `control_url`, and its environment.
pub fn aws_cli(control_url: &str, args: &[&str]) -> std::process::Output {
    aws_cli_for("elbv2", control_url, args)
}

/// The AWS CLI's `service` commands (`elbv2`, `cloudwatch`) pointed at
/// `control_url` with the stack's credentials.
pub fn aws_cli_for(service: &str, control_url: &str, args: &[&str]) -> std::process::Output {
    let credentials = stack_credentials();
    std::process::Command::new("aws")
        .args([
            service,
            "--region",
            REGION,
            "--endpoint-url",
            control_url,
            "--output",
            "json",
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", credentials.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_PAGER", "")
        .output()
        .expect("the aws CLI runs (install awscli)")
}

/// The ARNs the SDK reports for the stack's resources.
pub struct StackArns {
    pub load_balancer: String,
    pub listener: String,
    pub default_rule: String,
    pub monolith_rule: String,
    pub target_group: std::collections::HashMap<String, String>,
}

pub async fn stack_arns(client: &elbv2::Client) -> StackArns {
    let lbs = client
        .describe_load_balancers()
        .send()
        .await
        .expect("describe LBs");
    let load_balancer = lbs.load_balancers()[0]
        .load_balancer_arn()
        .expect("LB ARN")
        .to_owned();
    let listeners = client
        .describe_listeners()
        .load_balancer_arn(&load_balancer)
        .send()
        .await
        .expect("describe listeners");
    let listener = listeners.listeners()[0]
        .listener_arn()
        .expect("listener ARN")
        .to_owned();
    let rules = client
        .describe_rules()
        .listener_arn(&listener)
        .send()
        .await
        .expect("describe rules");
    let default_rule = rules
        .rules()
        .iter()
        .find(|r| r.is_default() == Some(true))
        .and_then(|r| r.rule_arn())
        .expect("a default rule")
        .to_owned();
    // The monolith rule is found by its tag, the way `migrate` finds it.
    let numbered: Vec<String> = rules
        .rules()
        .iter()
        .filter(|r| r.is_default() == Some(false))
        .filter_map(|r| r.rule_arn().map(str::to_owned))
        .collect();
    let tags = client
        .describe_tags()
        .set_resource_arns(Some(numbered))
        .send()
        .await
        .expect("describe tags");
    let monolith_rule = tags
        .tag_descriptions()
        .iter()
        .find(|d| {
            d.tags()
                .iter()
                .any(|t| t.key() == Some("ficus:role") && t.value() == Some("monolith"))
        })
        .and_then(|d| d.resource_arn())
        .expect("a rule tagged ficus:role=monolith")
        .to_owned();
    let tgs = client
        .describe_target_groups()
        .send()
        .await
        .expect("describe TGs");
    let target_group = tgs
        .target_groups()
        .iter()
        .map(|tg| {
            (
                tg.target_group_name().unwrap_or_default().to_owned(),
                tg.target_group_arn().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    StackArns {
        load_balancer,
        listener,
        default_rule,
        monolith_rule,
        target_group,
    }
}

/// The AWS error code of an SDK error.
pub fn code_of<E, R>(error: &elbv2::error::SdkError<E, R>) -> String
where
    E: aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata,
{
    use aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata;
    error.code().unwrap_or("<no code>").to_owned()
}

/// A target answering every request with 200 and `body`; its port.
pub async fn live_target(body: &'static str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(reply.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A stack file with one target group per (name, target ports) pair, the
/// first being the listener's default; written into `dir`.
pub fn write_stack(dir: &Path, groups: &[(&str, &[u16])]) -> PathBuf {
    let credentials = stack_credentials();
    let mut text = format!(
        "region = \"us-east-1\"\naccount_id = \"000000000000\"\n\
         [credentials]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n\
         [load_balancer]\nname = \"test\"\n\
         [listener]\nport = 80\ndefault_action = {{ forward = \"{}\" }}\n",
        credentials.access_key_id, credentials.secret_access_key, groups[0].0
    );
    for (name, ports) in groups {
        let targets: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        text.push_str(&format!(
            "[[target_groups]]\nname = \"{name}\"\nport = 3000\ntargets = [{}]\n\
             health_check = {{ path = \"/\", interval_seconds = 5, timeout_seconds = 2, healthy_threshold = 2, unhealthy_threshold = 2, matcher = \"200\" }}\n",
            targets.join(", ")
        ));
    }
    let path = dir.join("stack.toml");
    std::fs::write(&path, text).expect("stack file written");
    path
}
