//! Helpers for black-box tests of the four servers: start one in-process or as a
//! real child process on a free port, and talk raw HTTP/1.1 to it so that every
//! status line, header and byte of the body is visible (HEAD's Content-Length,
//! 204 without Content-Type, `Connection: close` on 400).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::service::Service;
use crate::settings::Settings;
use crate::startup::{Application, StartupError};

/// Settings for a test server: loopback, a free port, one worker.
pub fn test_settings() -> Settings {
    Settings {
        host: "127.0.0.1".to_owned(),
        port: 0,
        workers: Some(1),
        ..Settings::default()
    }
}

/// Starts `service` in this process on its own thread and tokio runtime; it runs
/// until the test process exits. Returns the address it listens on.
pub fn start_in_process(service: Service, settings: Settings) -> Result<SocketAddr, StartupError> {
    let (started, address) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            match Application::build(service, &settings) {
                Ok(application) => {
                    let _ = started.send(Ok(application.address()));
                    let _ = application.run_until(std::future::pending()).await;
                }
                Err(error) => {
                    let _ = started.send(Err(error));
                }
            }
        })
    });
    address.recv().expect("the server thread reports its start")
}

/// A response as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lowercased, in wire order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method target HTTP/1.1` with `Connection: close` and reads the whole
/// response until the server closes the connection.
pub fn send(address: SocketAddr, method: &str, target: &str) -> io::Result<RawResponse> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> io::Result<RawResponse> {
    let malformed = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what}: {:?}", String::from_utf8_lossy(raw)),
        )
    };
    let end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| malformed("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| malformed("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| malformed("no status line"))?;
    let headers = lines
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| malformed("bad header line"))?;
            Ok((name.to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect::<io::Result<_>>()?;
    Ok(RawResponse {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

/// A server binary running as a child process.
pub struct SpawnedServer {
    child: Child,
    pub address: SocketAddr,
    /// The log lines up to and including the `listening on` line.
    pub startup_log: Vec<String>,
    /// Standard output after the `listening on` line.
    pub stdout: BufReader<ChildStdout>,
}

impl SpawnedServer {
    /// Starts `binary` with `args` on a free loopback port (flags given in `args`
    /// win) and waits for its `listening on ADDRESS` line. `RUST_LOG` is unset so
    /// the default log filter applies.
    pub fn start(binary: impl AsRef<Path>, args: &[&str]) -> io::Result<SpawnedServer> {
        let mut child = Command::new(binary.as_ref())
            .args(["--host", "127.0.0.1", "--port", "0", "--workers", "1"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut startup_log = Vec::new();
        match read_listening_address(&mut stdout, &mut startup_log) {
            Ok(address) => Ok(SpawnedServer {
                child,
                address,
                startup_log,
                stdout,
            }),
            Err(error) => {
                let _ = child.kill();
                let status = child.wait()?;
                Err(io::Error::other(format!(
                    "server ({status}) did not report listening: {error}"
                )))
            }
        }
    }

    pub fn send(&self, method: &str, target: &str) -> io::Result<RawResponse> {
        send(self.address, method, target)
    }

    /// Sends the signal `name` (`TERM`, `INT`, ...) to the process.
    pub fn signal(&self, name: &str) -> io::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("kill -{name} failed: {status}")))
        }
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> io::Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_for_exit(&mut self, limit: Duration) -> io::Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "server did not exit in time",
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Reads log lines into `lines` up to the one saying `listening on ADDRESS`
/// (text or JSON) and returns the address.
fn read_listening_address(
    stdout: &mut impl BufRead,
    lines: &mut Vec<String>,
) -> io::Result<SocketAddr> {
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "no listening line",
            ));
        }
        let address: Option<String> = line.split("listening on ").nth(1).map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
                .collect()
        });
        lines.push(line);
        if let Some(address) = address {
            return address.parse().map_err(io::Error::other);
        }
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The black-box check every extracted binary passes: started as a process it
/// answers `/`, `/api/` and `own_paths` (JSON), answers 404 (GET and POST) on
/// `foreign_paths`, and exits 0 on SIGTERM. Panics with the failing path.
pub fn check_extracted_binary(binary: &str, own_paths: &[&str], foreign_paths: &[&str]) {
    let mut server = SpawnedServer::start(binary, &[]).expect("the binary starts");
    let answer = |method: &str, target: &str| {
        let response = server.send(method, target).expect("the server answers");
        (
            response.status,
            response.header("content-type").map(str::to_owned),
        )
    };
    let json = Some("application/json; charset=utf-8".to_owned());
    let text = Some("text/plain; charset=utf-8".to_owned());
    assert_eq!(answer("GET", "/"), (200, text.clone()));
    assert_eq!(answer("GET", "/api/"), (200, text.clone()));
    for target in own_paths {
        assert_eq!(answer("GET", target), (200, json.clone()), "{target}");
    }
    for target in foreign_paths {
        assert_eq!(answer("GET", target), (404, text.clone()), "{target}");
        assert_eq!(answer("POST", target), (404, text.clone()), "{target}");
    }
    server.signal("TERM").expect("SIGTERM is sent");
    let status = server
        .wait_for_exit(Duration::from_secs(10))
        .expect("the binary exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
}
