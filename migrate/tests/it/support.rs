//! Shared test harness: real processes on free ports (moto_server, the forum
//! binaries, the local ALB), the real `migrate` binary, and an ELBv2 client to
//! look at the load balancer from the side.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2 as elbv2;

pub const MIGRATE: &str = env!("CARGO_BIN_EXE_migrate");

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tokio runtime for the SDK calls the tests make themselves.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The SDK's configuration for an endpoint, with static credentials.
pub fn sdk_config(
    rt: &tokio::runtime::Runtime,
    endpoint: &str,
    key: &str,
    secret: &str,
) -> aws_config::SdkConfig {
    let creds = aws_credential_types::Credentials::new(key, secret, None, None, "test");
    rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(creds)
            .load(),
    )
}

/// An ELBv2 client for an endpoint, with static credentials.
pub fn elb_client(
    rt: &tokio::runtime::Runtime,
    endpoint: &str,
    key: &str,
    secret: &str,
) -> elbv2::Client {
    elbv2::Client::new(&sdk_config(rt, endpoint, key, secret))
}

/// A CloudWatch client for an endpoint, with static credentials.
pub fn cloudwatch_client(
    rt: &tokio::runtime::Runtime,
    endpoint: &str,
    key: &str,
    secret: &str,
) -> aws_sdk_cloudwatch::Client {
    aws_sdk_cloudwatch::Client::new(&sdk_config(rt, endpoint, key, secret))
}

/// The CloudWatch dimensions AWS publishes an ALB's metrics with:
/// `LoadBalancer` (`app/<name>/<id>`, from a listener's ARN) and
/// `TargetGroup` (`targetgroup/<name>/<id>`), written out here independently
/// of `migrate`'s own code.
pub fn alb_dimensions(listener_arn: &str, target_group_arn: &str) -> (String, String) {
    let listener = listener_arn.split(":listener/").nth(1).unwrap();
    let lb: Vec<&str> = listener.split('/').take(3).collect();
    let tg = target_group_arn.split(':').next_back().unwrap();
    (lb.join("/"), tg.to_owned())
}

/// A directory with a migrate.toml, and how to run `migrate` in it.
pub struct Operator {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Operator {
    pub fn new(config: &str, env: Vec<(String, String)>) -> Operator {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("migrate.toml"), config).unwrap();
        Operator { dir, env }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("migrate.toml")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(MIGRATE);
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .env("AWS_CONFIG_FILE", "/nonexistent/ficus-test")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/ficus-test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Runs `migrate init` and asserts that it succeeded; its run, for
    /// what it said.
    pub fn init(&self) -> Run {
        let init = self.run(&["init"]);
        assert_eq!(init.code, 0, "{init}");
        init
    }

    /// Runs `migrate ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().unwrap();
        Run::from(output)
    }

    /// Runs `migrate ARGS` with a stdout whose reader is already gone (as in
    /// `migrate ARGS | true`).
    pub fn run_stdout_closed(&self, args: &[&str]) -> Run {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = self
            .command(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        Run::from(output)
    }

    /// Starts `migrate ARGS` in the background.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Starts `migrate ARGS` in the background, its stderr read line by line
    /// as it comes (see [`Watched`]).
    pub fn spawn_watched(&self, args: &[&str]) -> Watched {
        let mut child = self.spawn(args);
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Watched {
            child,
            lines,
            reader,
        }
    }

    /// Starts `migrate shift ROUTE --steps STEPS --interval INTERVAL` in the
    /// background.
    pub fn spawn_shift(&self, route: &str, steps: &str, interval: &str) -> Child {
        self.spawn(&shift_args(route, steps, interval))
    }

    pub fn status_json(&self) -> serde_json::Value {
        let run = self.run(&["status", "--output", "json"]);
        assert_eq!(run.code, 0, "status failed: {}", run.stderr);
        serde_json::from_str(&run.stdout).unwrap()
    }

    pub fn route_status(&self, route: &str) -> serde_json::Value {
        let status = self.status_json();
        status["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == route)
            .unwrap()
            .clone()
    }

    pub fn journal(&self) -> Vec<serde_json::Value> {
        let path = self.dir.path().join(".ficus/journal.jsonl");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// The ELBv2 actions a `migrate -v` run called, in order (its
    /// `migrate: elbv2 ACTION ...` lines).
    pub fn elbv2_calls(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter_map(|line| line.strip_prefix("migrate: elbv2 "))
            .filter_map(|rest| rest.split_whitespace().next())
            .collect()
    }

    /// The N of the run's `migrate: AWS API: N calls, ...` line on stderr.
    pub fn aws_api_calls(&self) -> u64 {
        self.stderr
            .lines()
            .find_map(|line| line.strip_prefix("migrate: AWS API: "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `migrate: AWS API: N calls` line: {self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The arguments of `migrate shift ROUTE --steps STEPS --interval INTERVAL`.
pub fn shift_args<'a>(route: &'a str, steps: &'a str, interval: &'a str) -> [&'a str; 6] {
    ["shift", route, "--steps", steps, "--interval", interval]
}

/// A background `migrate` whose stderr a test watches while it runs.
pub struct Watched {
    child: Child,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Watched {
    /// Whether a line said so far contains `text`.
    pub fn said(&self, text: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits for the process; what it said.
    pub fn finish(mut self) -> Run {
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut stdout).unwrap();
        }
        let status = self.child.wait().unwrap();
        self.reader.join().unwrap();
        let stderr = self.lines.lock().unwrap().join("\n");
        Run {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
        }
    }
}

/// The one JSON document a failed command prints on stdout under `--output json`.
pub fn failure_json(run: &Run, code: i32) -> serde_json::Value {
    assert_eq!(run.code, code, "{run}");
    let document: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|err| panic!("stdout is not one JSON document ({err}): {run}"));
    assert_eq!(document["ok"], false, "{run}");
    assert_eq!(document["exit_code"], code, "{run}");
    assert!(
        run.stderr
            .contains(document["error"].as_str().unwrap().lines().next().unwrap()),
        "the text stays on stderr: {run}"
    );
    document
}

/// Finishes a background `migrate`.
pub fn finish(child: Child) -> Run {
    Run::from(child.wait_with_output().unwrap())
}

/// A route's rule as the ELBv2 API describes it: (priority, forward weights by
/// target group name; a plain forward is one group with weight 100).
pub fn route_rule(
    rt: &tokio::runtime::Runtime,
    elb: &elbv2::Client,
    listener: &str,
    route: &str,
) -> Option<(String, BTreeMap<String, i32>)> {
    rt.block_on(async {
        let rules = elb
            .describe_rules()
            .listener_arn(listener)
            .send()
            .await
            .unwrap();
        for rule in rules.rules() {
            let arn = rule.rule_arn().unwrap();
            let tags = elb.describe_tags().resource_arns(arn).send().await.unwrap();
            let tagged = tags
                .tag_descriptions()
                .iter()
                .flat_map(|d| d.tags())
                .any(|t| t.key() == Some("ficus:route") && t.value() == Some(route));
            if !tagged {
                continue;
            }
            let action = rule.actions().last().unwrap();
            let mut weights = BTreeMap::new();
            let tuples = action
                .forward_config()
                .map(|c| c.target_groups())
                .unwrap_or_default();
            if tuples.len() > 1 {
                for t in tuples {
                    weights.insert(
                        tg_name(t.target_group_arn().unwrap()),
                        t.weight().unwrap_or(1),
                    );
                }
            } else {
                let arn = action
                    .target_group_arn()
                    .or_else(|| tuples.first().and_then(|t| t.target_group_arn()))
                    .unwrap();
                weights.insert(tg_name(arn), 100);
            }
            return Some((rule.priority().unwrap().to_owned(), weights));
        }
        None
    })
}

fn tg_name(arn: &str) -> String {
    arn.split(":targetgroup/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

/// Polls until `check` holds, or panics with `what`.
pub fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every service's target is healthy (health checks every 5 s).
pub fn wait_healthy(op: &Operator) {
    eventually(Duration::from_secs(40), "all targets healthy", || {
        let status = op.status_json();
        status["routes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["healthy"] == 1 && r["unhealthy"] == 0)
    });
}

/// The ARN of the rule tagged for `route`.
pub fn route_rule_arn(
    rt: &tokio::runtime::Runtime,
    elb: &elbv2::Client,
    listener: &str,
    route: &str,
) -> String {
    let (priority, _) = route_rule(rt, elb, listener, route).expect("the route has a rule");
    rule_at(rt, elb, listener, priority.parse().unwrap()).unwrap()
}

/// A resource's tags.
pub fn tags_of(
    rt: &tokio::runtime::Runtime,
    elb: &elbv2::Client,
    arn: &str,
) -> BTreeMap<String, String> {
    rt.block_on(async {
        let out = elb.describe_tags().resource_arns(arn).send().await.unwrap();
        out.tag_descriptions()
            .iter()
            .flat_map(|d| d.tags())
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    })
}

/// Adds one tag to a resource, as an operator would by hand.
pub fn add_tag(
    rt: &tokio::runtime::Runtime,
    elb: &elbv2::Client,
    arn: &str,
    key: &str,
    value: &str,
) {
    let tag = elbv2::types::Tag::builder().key(key).value(value).build();
    rt.block_on(elb.add_tags().resource_arns(arn).tags(tag).send())
        .unwrap();
}

/// SIGINT, as Ctrl-C sends it.
pub fn sigint(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// SIGKILL.
pub fn sigkill(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = child.wait();
}

// ----------------------------------------------------------------- moto

/// moto_server on a free port, with a load balancer like the local stack's.
pub struct MotoStack {
    /// Held: moto_server stops when the stack is dropped.
    _server: Proc,
    pub endpoint: String,
    pub listener_arn: String,
    pub target_groups: BTreeMap<String, String>,
    pub lb_stub: LbStub,
    /// Stands in for the monolith and the services in the parity gate.
    pub service_stub: LbStub,
    /// moto's CloudWatch in the protocol the SDK speaks.
    pub cloudwatch: CborToQuery,
}

impl MotoStack {
    pub fn start(rt: &tokio::runtime::Runtime) -> MotoStack {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server is on PATH (pip install 'moto[server]')");
        let server = Proc(child);
        wait_for_port(port, Duration::from_secs(30));
        let endpoint = format!("http://127.0.0.1:{port}");
        let (vpc, subnets) = default_subnets(&endpoint);
        let elb = elb_client(rt, &endpoint, "testing", "testing");
        let (listener_arn, target_groups) = rt.block_on(async {
            let mut target_groups = BTreeMap::new();
            for (index, name) in ["monolith", "users", "threads", "posts"].iter().enumerate() {
                let tg = elb
                    .create_target_group()
                    .name(*name)
                    .protocol(elbv2::types::ProtocolEnum::Http)
                    .port(3000)
                    .vpc_id(&vpc)
                    .target_type(elbv2::types::TargetTypeEnum::Ip)
                    .send()
                    .await
                    .unwrap();
                let arn = tg.target_groups()[0].target_group_arn().unwrap().to_owned();
                let target = elbv2::types::TargetDescription::builder()
                    .id(format!("10.0.0.{}", 10 + index))
                    .port(3000)
                    .build();
                elb.register_targets()
                    .target_group_arn(&arn)
                    .targets(target)
                    .send()
                    .await
                    .unwrap();
                target_groups.insert(name.to_string(), arn);
            }
            let lb = elb
                .create_load_balancer()
                .name("ficus-moto")
                .set_subnets(Some(subnets))
                .send()
                .await
                .unwrap();
            let lb_arn = lb.load_balancers()[0]
                .load_balancer_arn()
                .unwrap()
                .to_owned();
            let forward_monolith = elbv2::types::Action::builder()
                .r#type(elbv2::types::ActionTypeEnum::Forward)
                .target_group_arn(&target_groups["monolith"])
                .build();
            let listener = elb
                .create_listener()
                .load_balancer_arn(&lb_arn)
                .protocol(elbv2::types::ProtocolEnum::Http)
                .port(80)
                .default_actions(forward_monolith.clone())
                .send()
                .await
                .unwrap();
            let listener_arn = listener.listeners()[0].listener_arn().unwrap().to_owned();
            let condition = elbv2::types::RuleCondition::builder()
                .field("path-pattern")
                .path_pattern_config(
                    elbv2::types::PathPatternConditionConfig::builder()
                        .values("/api*")
                        .build(),
                )
                .build();
            elb.create_rule()
                .listener_arn(&listener_arn)
                .priority(99)
                .conditions(condition)
                .actions(forward_monolith)
                .tags(
                    elbv2::types::Tag::builder()
                        .key("ficus:role")
                        .value("monolith")
                        .build(),
                )
                .send()
                .await
                .unwrap();
            (listener_arn, target_groups)
        });
        MotoStack {
            _server: server,
            cloudwatch: CborToQuery::start(&endpoint),
            endpoint,
            listener_arn,
            target_groups,
            lb_stub: LbStub::start(),
            service_stub: LbStub::start(),
        }
    }

    pub fn elb(&self, rt: &tokio::runtime::Runtime) -> elbv2::Client {
        elb_client(rt, &self.endpoint, "testing", "testing")
    }

    /// A migrate.toml for this stack (routes users, threads, posts).
    pub fn config(&self) -> String {
        format!(
            r#"lb_url = "{lb}"
# moto applies a change at once: no node to wait for.
propagation_max = "0s"
[listener]
load_balancer = "ficus-moto"
port = 80
[monolith]
base_url = "{service}"
# moto routes no traffic (the probes go to a stub): no ALB metrics to judge by.
[metrics]
enabled = false
{routes}"#,
            lb = self.lb_stub.url(),
            service = self.service_stub.url(),
            routes = routes_toml(1, "1s", &self.service_stub.url())
        )
    }

    pub fn operator(&self) -> Operator {
        self.operator_with("")
    }

    /// An operator whose migrate.toml is this stack's with `extra` TOML
    /// appended (e.g. `[[notify]]` sinks, `[[routes.users.gates]]`).
    pub fn operator_with(&self, extra: &str) -> Operator {
        Operator::new(
            &format!("{}{extra}", self.config()),
            vec![
                ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
                ("AWS_REGION".into(), "us-east-1".into()),
                ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ],
        )
    }
}

/// The `[routes.*]` tables of the local stack's layout.
pub fn routes_toml(priority_base: u32, interval: &str, service_url: &str) -> String {
    let mut text = String::new();
    for (index, (route, probe)) in [
        ("users", "/api/users"),
        ("threads", "/api/threads"),
        ("posts", "/api/posts"),
    ]
    .iter()
    .enumerate()
    {
        text.push_str(&format!(
            r#"
[routes.{route}]
paths = ["/api/{route}*"]
target_group = "{route}"
service_url = "{service_url}"
priority = {priority}
steps = [10, 50, 100]
interval = "{interval}"
error_budget = 0.05
probe_paths = ["{probe}"]
probe_rate = 20.0
min_probes = 5
"#,
            priority = priority_base + index as u32
        ));
    }
    text
}

/// moto's default VPC and two of its subnets, asked with a plain Query call
/// (moto does not check signatures, only reads the service from the scope).
fn default_subnets(endpoint: &str) -> (String, Vec<String>) {
    let body = "Action=DescribeSubnets&Version=2016-11-15";
    let host = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).unwrap();
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let values = |tag: &str| -> Vec<String> {
        response
            .split(&format!("<{tag}>"))
            .skip(1)
            .filter_map(|rest| rest.split(&format!("</{tag}>")).next())
            .map(str::to_owned)
            .collect()
    };
    let vpc = values("vpcId")
        .into_iter()
        .next()
        .expect("moto has a default VPC");
    let subnets = values("subnetId").into_iter().take(2).collect();
    (vpc, subnets)
}

/// A stand-in for the load balancer's data plane when the control plane is
/// moto (which routes nothing): answers every request with `status`.
pub struct LbStub {
    pub port: u16,
    pub status: Arc<AtomicU16>,
    pub requests: Arc<AtomicUsize>,
}

impl LbStub {
    pub fn start() -> LbStub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let status = Arc::new(AtomicU16::new(200));
        let requests = Arc::new(AtomicUsize::new(0));
        let (status_in, requests_in) = (status.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let code = status_in.load(Ordering::SeqCst);
                requests_in.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || answer(stream, code));
            }
        });
        LbStub {
            port,
            status,
            requests,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn answer(stream: TcpStream, code: u16) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line == "\r\n" {
            break;
        }
        line.clear();
    }
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    );
}

// ------------------------------------------------------------ local stack

/// The directory holding the workspace's binaries (target/debug).
pub fn bin_dir() -> PathBuf {
    Path::new(MIGRATE).parent().unwrap().to_path_buf()
}

/// The local stack's binaries beside `migrate`, built first (a no-op when
/// fresh), so the tests run the current source.
pub fn stack_binaries() -> localstack::Binaries {
    localstack::Binaries::locate(Some(&bin_dir()), &[], localstack::Build::Always).unwrap()
}

/// One process of the [`LocalStack`] (a forum server, or the local ALB), its
/// output in a log file of the stack's.
pub struct Part {
    stack: localstack::blocking::Stack,
    name: &'static str,
}

impl Part {
    /// The lines of its log (all of its runs) containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        let log = self.stack.get().log(self.name);
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// The address a forum server listens on (`None` for the local ALB).
    pub fn address(&self) -> Option<std::net::SocketAddr> {
        self.stack.get().server_address(self.name)
    }

    /// SIGKILLs it (the local ALB comes back with [`LocalStack::restart_alb`]).
    pub fn stop(&mut self) {
        if self.name == localstack::ALB {
            self.stack.kill_alb();
        } else {
            self.stack.kill_server(self.name);
        }
    }
}

/// The local ALB in front of the real monolith and services, all on free
/// ports, started by the `localstack` crate from the repo's stack file.
pub struct LocalStack {
    stack: localstack::blocking::Stack,
    /// The forum servers by name; each stops when the stack is dropped (or `stop()`).
    pub services: BTreeMap<String, Part>,
    /// The local ALB; it stops when the stack is dropped (or `alb.stop()`).
    pub alb: Part,
    pub data_url: String,
    pub control_url: String,
    /// The stack file, the ALB's state, the logs; declared last, so they
    /// outlive the processes.
    _dir: tempfile::TempDir,
}

/// The stack file's credentials.
pub const LOCAL_KEY: &str = "AKIAFICUSLOCAL000000";
/// The `[metrics]` of the test stack's migrate.toml: the local ALB's
/// per-second metrics, and the probes (20/s, 2/s at 10%) as the traffic.
/// A debug build's p99 on a busy machine jumps by tens of ms: as the repo's
/// migrate.toml, a 100 ms allowance (tests/it/gates.rs holds 25 ms).
pub const LOCAL_METRICS: &str =
    "period = \"1s\"\nmin_requests = 1\nmax_wait = \"5s\"\nlatency_allowance = \"100ms\"";
pub const LOCAL_SECRET: &str = "ficus-local-secret-access-key";

impl LocalStack {
    pub fn start() -> LocalStack {
        LocalStack::start_with(|_, addr| addr)
    }

    /// The local stack, with each target group's target chosen by `front`
    /// from (server name, its address): e.g. a proxy in front of one service.
    pub fn start_with(
        front: impl Fn(&str, std::net::SocketAddr) -> std::net::SocketAddr + Send + Sync + 'static,
    ) -> LocalStack {
        LocalStack::start_configured(front, Vec::new())
    }

    /// The local stack with extra `local-alb` arguments (e.g. the access
    /// log's root and interval, or faults: `["--throttle", "DescribeRules=1"]`).
    pub fn start_with_alb_args(alb_args: &[&str]) -> LocalStack {
        let alb_args = alb_args.iter().map(|arg| (*arg).to_owned()).collect();
        LocalStack::start_configured(|_, address| address, alb_args)
    }

    fn start_configured(
        front: impl Fn(&str, std::net::SocketAddr) -> std::net::SocketAddr + Send + Sync + 'static,
        alb_args: Vec<String>,
    ) -> LocalStack {
        let binaries = stack_binaries();
        let dir = tempfile::tempdir().unwrap();
        let options = localstack::Options {
            written_by: "the migrate tests",
            alb_args,
            route_settings: toml::Table::new(),
            front: Some(localstack::Front::new(front)),
        };
        let stack = localstack::blocking::Stack::start(binaries, dir.path(), options).unwrap();
        let (data_url, control_url) = {
            let running = stack.get();
            assert_eq!(
                (
                    running.access_key_id.as_str(),
                    running.secret_access_key.as_str()
                ),
                (LOCAL_KEY, LOCAL_SECRET),
                "the stack file's credentials"
            );
            (running.data_url(), running.control_url())
        };
        let part = |name| Part {
            stack: stack.clone(),
            name,
        };
        LocalStack {
            services: localstack::SERVERS
                .into_iter()
                .map(|name| (name.to_owned(), part(name)))
                .collect(),
            alb: part(localstack::ALB),
            stack,
            data_url,
            control_url,
            _dir: dir,
        }
    }

    pub fn elb(&self, rt: &tokio::runtime::Runtime) -> elbv2::Client {
        elb_client(rt, &self.control_url, LOCAL_KEY, LOCAL_SECRET)
    }

    /// Starts the local ALB again (after `alb.stop()`) on the same addresses,
    /// stack file and state directory: it comes back with the changes it had
    /// acknowledged.
    pub fn restart_alb(&mut self) {
        self.stack.restart_alb().unwrap();
        assert_eq!(self.stack.get().control_url(), self.control_url);
    }

    /// An ELBv2 client of this stack and its listener's ARN.
    pub fn elb_and_listener(&self, rt: &tokio::runtime::Runtime) -> (elbv2::Client, String) {
        (self.elb(rt), self.listener_arn(rt))
    }

    pub fn listener_arn(&self, rt: &tokio::runtime::Runtime) -> String {
        let elb = self.elb(rt);
        rt.block_on(async {
            let lbs = elb
                .describe_load_balancers()
                .names("ficus-local")
                .send()
                .await
                .unwrap();
            let lb = lbs.load_balancers()[0]
                .load_balancer_arn()
                .unwrap()
                .to_owned();
            let listeners = elb
                .describe_listeners()
                .load_balancer_arn(lb)
                .send()
                .await
                .unwrap();
            listeners.listeners()[0].listener_arn().unwrap().to_owned()
        })
    }

    /// A migrate.toml like the repo's, pointing at this stack.
    pub fn operator(&self, interval: &str) -> Operator {
        self.operator_with_metrics(interval, LOCAL_METRICS)
    }

    /// [`LocalStack::operator`] after a successful `migrate init`, once
    /// every route's target is healthy: ready to shift.
    pub fn ready_operator(&self, interval: &str) -> Operator {
        let op = self.operator(interval);
        op.init();
        wait_healthy(&op);
        op
    }

    /// [`LocalStack::operator`] with `metrics` as the `[metrics]` table.
    pub fn operator_with_metrics(&self, interval: &str, metrics: &str) -> Operator {
        let mut routes = routes_toml(1, interval, "SERVICE_URL");
        let running = self.stack.get();
        for route in ["users", "threads", "posts"] {
            routes = routes.replacen(
                "service_url = \"SERVICE_URL\"",
                &format!("service_url = \"{}\"", running.server_url(route)),
                1,
            );
        }
        let monolith = running.server_url(localstack::MONOLITH_TARGET_GROUP);
        let config = format!(
            r#"lb_url = "{data}"
# The local ALB without --propagation applies a change on its node at once
# (a test of propagation sets MIGRATE__PROPAGATION_MAX).
propagation_max = "0s"
[aws]
region = "us-east-1"
endpoint_url = "{control}"
access_key_id = "{LOCAL_KEY}"
secret_access_key = "{LOCAL_SECRET}"
[listener]
load_balancer = "ficus-local"
port = 80
[monolith]
base_url = "{monolith}"
[metrics]
{metrics}
{routes}"#,
            data = self.data_url,
            control = self.control_url,
        );
        Operator::new(&config, vec![])
    }

    /// Requests answered per target group, from the local ALB's metrics.
    pub fn answered_by(&self) -> BTreeMap<String, u64> {
        let body = http_get(&format!("{}/metrics", self.control_url)).1;
        alb::metrics::requests_by_target_group(&alb::metrics::parse(&body))
    }

    /// Sends `n` GETs of `path` through the load balancer; returns the target
    /// groups that answered them (from the metrics' difference) and the statuses.
    pub fn burst(&self, path: &str, n: usize) -> (BTreeMap<String, u64>, Vec<u16>) {
        self.burst_for_host(path, None, n)
    }

    /// [`LocalStack::burst`] with the request's `Host` header set to `host`.
    pub fn burst_for_host(
        &self,
        path: &str,
        host: Option<&str>,
        n: usize,
    ) -> (BTreeMap<String, u64>, Vec<u16>) {
        let before = self.answered_by();
        let statuses = (0..n)
            .map(|_| http_get_host(&format!("{}{path}", self.data_url), host).0)
            .collect();
        let after = self.answered_by();
        let delta = after
            .iter()
            .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect();
        (delta, statuses)
    }
}

/// A plain HTTP/1.1 GET: (status, body).
pub fn http_get(url: &str) -> (u16, String) {
    http_get_host(url, None)
}

/// A plain HTTP/1.1 GET with `Host` set to `host` (default: the URL's).
pub fn http_get_host(url: &str, host_header: Option<&str>) -> (u16, String) {
    http_get_with(url, host_header, &[])
}

/// A plain HTTP/1.1 GET with `Host` set to `host` (default: the URL's) and
/// more header fields.
pub fn http_get_with(
    url: &str,
    host_header: Option<&str>,
    fields: &[(&str, &str)],
) -> (u16, String) {
    let rest = url.trim_start_matches("http://");
    let (addr, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = host_header.unwrap_or(addr);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let fields: String = fields
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{fields}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The ARN of the rule at `priority` on the listener.
pub fn rule_at(
    rt: &tokio::runtime::Runtime,
    elb: &elbv2::Client,
    listener: &str,
    priority: u32,
) -> Option<String> {
    rt.block_on(async {
        let rules = elb
            .describe_rules()
            .listener_arn(listener)
            .send()
            .await
            .unwrap();
        rules
            .rules()
            .iter()
            .find(|r| r.priority() == Some(priority.to_string().as_str()))
            .and_then(|r| r.rule_arn())
            .map(str::to_owned)
    })
}

/// A create-rule of a hand-made rule (on the local ALB): `paths`, forwarding to
/// the target group `group`, tagged `tags`.
pub fn create_rule(
    rt: &tokio::runtime::Runtime,
    elb: &elbv2::Client,
    listener: &str,
    priority: i32,
    paths: &[&str],
    group: &str,
    tags: &[(&str, &str)],
) -> String {
    use elbv2::types::{Action, ActionTypeEnum, Tag};
    rt.block_on(async {
        let groups = elb
            .describe_target_groups()
            .names(group)
            .send()
            .await
            .unwrap();
        let tg = groups.target_groups()[0]
            .target_group_arn()
            .unwrap()
            .to_owned();
        let out = elb
            .create_rule()
            .listener_arn(listener)
            .priority(priority)
            .set_conditions(Some(conditions(paths, None)))
            .actions(
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .target_group_arn(tg)
                    .build(),
            )
            // AWS refuses an empty tag list: no tags, no Tags parameter.
            .set_tags((!tags.is_empty()).then(|| {
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                    .collect()
            }))
            .send()
            .await
            .unwrap();
        out.rules()[0].rule_arn().unwrap().to_owned()
    })
}

/// A path-pattern condition, and with `host` a host-header one too.
pub fn conditions(paths: &[&str], host: Option<&str>) -> Vec<elbv2::types::RuleCondition> {
    use elbv2::types::{HostHeaderConditionConfig, PathPatternConditionConfig, RuleCondition};
    let mut out = vec![
        RuleCondition::builder()
            .field("path-pattern")
            .path_pattern_config(
                PathPatternConditionConfig::builder()
                    .set_values(Some(paths.iter().map(|p| p.to_string()).collect()))
                    .build(),
            )
            .build(),
    ];
    if let Some(host) = host {
        out.push(
            RuleCondition::builder()
                .field("host-header")
                .host_header_config(HostHeaderConditionConfig::builder().values(host).build())
                .build(),
        );
    }
    out
}

/// A rule's host-header values, as described.
pub fn rule_hosts(
    rt: &tokio::runtime::Runtime,
    elb: &elbv2::Client,
    rule_arn: &str,
) -> Vec<String> {
    rt.block_on(async {
        let out = elb
            .describe_rules()
            .rule_arns(rule_arn)
            .send()
            .await
            .unwrap();
        out.rules()[0]
            .conditions()
            .iter()
            .filter(|c| c.field() == Some("host-header"))
            .flat_map(|c| {
                c.host_header_config()
                    .map(|h| h.values().to_vec())
                    .unwrap_or_default()
            })
            .collect()
    })
}

/// Narrows the monolith's rule (priority 99 in the stack file) to `/api*`
/// on `host`, as on a load balancer that serves other hosts too
/// (docs/existing-alb.md); the rule's ARN.
pub fn monolith_rule_on_host(
    rt: &tokio::runtime::Runtime,
    elb: &elbv2::Client,
    listener: &str,
    host: &str,
) -> String {
    let rule = rule_at(rt, elb, listener, 99).unwrap();
    set_rule_conditions(rt, elb, &rule, &["/api*"], Some(host));
    rule
}

/// Rewrites a rule's conditions to `paths` and, with `host`, a host-header
/// condition (e.g. to give the monolith's rule a host, as hand-made ALBs have).
pub fn set_rule_conditions(
    rt: &tokio::runtime::Runtime,
    elb: &elbv2::Client,
    rule_arn: &str,
    paths: &[&str],
    host: Option<&str>,
) {
    rt.block_on(
        elb.modify_rule()
            .rule_arn(rule_arn)
            .set_conditions(Some(conditions(paths, host)))
            .send(),
    )
    .unwrap();
}

// ------------------------------------------------------------ webhooks

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!("not JSON ({err}): {}", String::from_utf8_lossy(&self.body))
        })
    }
}

/// How a [`Receiver`] answers: `status` with `body`, after `delay`; the
/// statuses in `first` are used first, one per request.
#[derive(Debug, Clone)]
pub struct Behavior {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
    pub first: std::collections::VecDeque<u16>,
}

/// A webhook receiver on a free port: records every request (before
/// answering) and answers as its [`Behavior`] says: 200, 500, slowly...
pub struct Receiver {
    pub port: u16,
    pub requests: Arc<std::sync::Mutex<Vec<Received>>>,
    pub behavior: Arc<std::sync::Mutex<Behavior>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let behavior = Arc::new(std::sync::Mutex::new(Behavior {
            status: 200,
            body: "ok".into(),
            delay: Duration::ZERO,
            first: Default::default(),
        }));
        let (requests_in, behavior_in) = (requests.clone(), behavior.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (requests, behavior) = (requests_in.clone(), behavior_in.clone());
                std::thread::spawn(move || receive(stream, &requests, &behavior));
            }
        });
        Receiver {
            port,
            requests,
            behavior,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Answers every request with this status and body from now on.
    pub fn answer(&self, status: u16, body: &str) {
        let mut behavior = self.behavior.lock().unwrap();
        behavior.status = status;
        body.clone_into(&mut behavior.body);
    }

    /// The JSON bodies received so far, in order.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(Received::json)
            .collect()
    }

    pub fn received(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }
}

/// A URL where nothing listens (a port bound, then closed).
pub fn down_url() -> String {
    format!("http://127.0.0.1:{}/hook", free_port())
}

fn receive(
    stream: TcpStream,
    requests: &std::sync::Mutex<Vec<Received>>,
    behavior: &std::sync::Mutex<Behavior>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
    let mut headers = BTreeMap::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    requests.lock().unwrap().push(Received {
        path,
        headers,
        body,
    });
    let (status, text, delay) = {
        let mut behavior = behavior.lock().unwrap();
        let status = behavior.first.pop_front().unwrap_or(behavior.status);
        (status, behavior.body.clone(), behavior.delay)
    };
    std::thread::sleep(delay);
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

// ------------------------------------------------- CloudWatch over moto

/// CloudWatch's RPC v2 CBOR protocol (what aws-sdk-cloudwatch speaks) in
/// front of moto_server, which serves CloudWatch only in the Query protocol:
/// each CBOR request is flattened into Query parameters for moto, and moto's
/// XML answer is encoded back as CBOR. GetMetricData and PutMetricData only.
/// moto computes no percentiles (it fails on `p99`): an extended statistic
/// is asked of it as `Maximum`. Point the SDK at it with
/// `AWS_ENDPOINT_URL_CLOUDWATCH`; ELBv2 stays on moto.
pub struct CborToQuery {
    pub url: String,
    /// GetMetricData requests still to be answered `ThrottlingException`
    /// (400), as CloudWatch throttles, before moto is asked again.
    pub throttle: Arc<AtomicUsize>,
}

impl CborToQuery {
    pub fn start(moto: &str) -> CborToQuery {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let moto = moto.trim_start_matches("http://").to_owned();
        let throttle = Arc::new(AtomicUsize::new(0));
        let throttling = throttle.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (moto, throttling) = (moto.clone(), throttling.clone());
                std::thread::spawn(move || translate(stream, &moto, &throttling));
            }
        });
        CborToQuery { url, throttle }
    }
}

/// One request: `POST /service/GraniteServiceVersion20100801/operation/OP`.
fn translate(stream: TcpStream, moto: &str, throttle: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let operation = head
        .split_whitespace()
        .nth(1)
        .and_then(|path| path.rsplit("/operation/").next())
        .unwrap_or_default()
        .to_owned();
    if operation == "GetMetricData"
        && throttle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        let mut encoded = Vec::new();
        let error = cbor_map(vec![
            (
                "__type",
                ciborium::Value::Text("ThrottlingException".into()),
            ),
            ("message", ciborium::Value::Text("Rate exceeded".into())),
        ]);
        ciborium::into_writer(&error, &mut encoded).unwrap();
        let mut stream = stream;
        let _ = write!(
            stream,
            "HTTP/1.1 400 X\r\nsmithy-protocol: rpc-v2-cbor\r\nContent-Type: application/cbor\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            encoded.len()
        );
        let _ = stream.write_all(&encoded);
        return;
    }
    let input: ciborium::Value =
        ciborium::from_reader(&body[..]).unwrap_or(ciborium::Value::Map(vec![]));
    let mut params = vec![
        ("Action".to_owned(), operation.clone()),
        ("Version".to_owned(), "2010-08-01".to_owned()),
    ];
    flatten("", &input, &mut params);
    let form: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect();
    let form = form.join("&");
    let mut upstream = TcpStream::connect(moto).unwrap();
    write!(
        upstream,
        "POST / HTTP/1.1\r\nHost: {moto}\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/monitoring/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut answer = String::new();
    upstream.read_to_string(&mut answer).unwrap();
    let status: u16 = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let xml = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let output = if status != 200 {
        let code = xml_values(xml, "Code")
            .into_iter()
            .next()
            .unwrap_or("InternalFailure".into());
        let message = xml_values(xml, "Message")
            .into_iter()
            .next()
            .unwrap_or_default();
        cbor_map(vec![
            ("__type", ciborium::Value::Text(code)),
            ("message", ciborium::Value::Text(message)),
        ])
    } else if operation == "GetMetricData" {
        metric_data_results(xml)
    } else {
        cbor_map(vec![])
    };
    let mut encoded = Vec::new();
    ciborium::into_writer(&output, &mut encoded).unwrap();
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {} X\r\nsmithy-protocol: rpc-v2-cbor\r\nContent-Type: application/cbor\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        if status == 200 { 200 } else { 400 },
        encoded.len()
    );
    let _ = stream.write_all(&encoded);
}

fn cbor_map(entries: Vec<(&str, ciborium::Value)>) -> ciborium::Value {
    ciborium::Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (ciborium::Value::Text(k.to_owned()), v))
            .collect(),
    )
}

/// CBOR input as Query parameters: `A.B`, lists as `A.member.N`, epoch
/// timestamps (tag 1) as ISO 8601; extended statistics as `Maximum`.
fn flatten(prefix: &str, value: &ciborium::Value, out: &mut Vec<(String, String)>) {
    use ciborium::Value;
    let text = match value {
        Value::Map(entries) => {
            for (key, value) in entries {
                let key = key.as_text().unwrap_or_default();
                let name = if prefix.is_empty() {
                    key.to_owned()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, value, out);
            }
            return;
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}.member.{}", index + 1), item, out);
            }
            return;
        }
        Value::Tag(1, inner) => {
            let secs = match inner.as_ref() {
                Value::Integer(i) => i128::from(*i) as f64,
                Value::Float(f) => *f,
                _ => 0.0,
            };
            let at = time::OffsetDateTime::from_unix_timestamp(secs.floor() as i64).unwrap();
            at.format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        }
        Value::Text(text) if prefix.ends_with(".Stat") && text.starts_with('p') => {
            "Maximum".to_owned()
        }
        Value::Text(text) => text.clone(),
        Value::Integer(i) => i128::from(*i).to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return,
    };
    out.push((prefix.to_owned(), text));
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The texts of every `<tag>` in `xml`.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    xml.split(&format!("<{tag}>"))
        .skip(1)
        .filter_map(|rest| rest.split(&format!("</{tag}>")).next())
        .map(str::to_owned)
        .collect()
}

/// moto's GetMetricData XML as the CBOR output shape.
fn metric_data_results(xml: &str) -> ciborium::Value {
    use ciborium::Value;
    let mut results = Vec::new();
    for chunk in xml.split("<Id>").skip(1) {
        let id = chunk.split("</Id>").next().unwrap_or_default().to_owned();
        let inner = |tag: &str| -> Vec<String> {
            xml_values(chunk, tag)
                .first()
                .map(|list| xml_values(list, "member"))
                .unwrap_or_default()
        };
        let mut timestamps = Vec::new();
        let mut values = Vec::new();
        for (at, value) in inner("Timestamps").iter().zip(inner("Values")) {
            let (Ok(at), Ok(value)) = (
                time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339),
                value.parse::<f64>(),
            ) else {
                continue;
            };
            timestamps.push(Value::Tag(
                1,
                Box::new(Value::Integer(at.unix_timestamp().into())),
            ));
            values.push(Value::Float(value));
        }
        results.push(cbor_map(vec![
            ("Id", Value::Text(id)),
            ("Timestamps", Value::Array(timestamps)),
            ("Values", Value::Array(values)),
            ("StatusCode", Value::Text("Complete".into())),
        ]));
    }
    cbor_map(vec![
        ("MetricDataResults", Value::Array(results)),
        ("Messages", Value::Array(vec![])),
    ])
}
