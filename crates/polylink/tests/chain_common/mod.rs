//! Helpers for end-to-end chain tests: run the `polylink` binary, find free ports, poll the RPC.
#![allow(dead_code)]

use polylink_chain::rpc::{Client, Status};
use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_polylink");

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `count` consecutive free ports on 127.0.0.1, starting at a port derived from `salt`.
pub fn free_ports(count: u16, salt: u16) -> u16 {
    let mut base = 20_000 + (std::process::id() as u16 % 20_000) + salt;
    loop {
        let all_free = (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
        base = base.wrapping_add(count + 7).max(20_000);
    }
}

/// Starts `polylink <args>` and waits until it prints its RPC address.
pub fn spawn_node(args: &[&str], log: &Path) -> (Proc, String) {
    spawn_node_in(None, args, log)
}

/// `polylink <args>`, run inside network namespace `netns` if given.
pub fn command_in(netns: Option<&str>, args: &[&str]) -> Command {
    match netns {
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", netns, BIN]).args(args);
            command
        }
        None => {
            let mut command = Command::new(BIN);
            command.args(args);
            command
        }
    }
}

/// [`spawn_node`] inside network namespace `netns` (a host of an emulated LAN), if given.
pub fn spawn_node_in(netns: Option<&str>, args: &[&str], log: &Path) -> (Proc, String) {
    let stderr = std::fs::File::create(log).expect("log file");
    let mut child = command_in(netns, args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn polylink");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("rpc listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("node did not start; see {}", log.display()));
    (Proc(child), url)
}

/// Runs `polylink <args>` to completion.
pub fn run_cli(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run polylink")
}

/// Runs `polylink <args>` and returns its stdout, failing the test on a non-zero exit.
pub fn cli_ok(args: &[&str]) -> String {
    let out = run_cli(args);
    assert!(
        out.status.success(),
        "polylink {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Registers a 30-layer llama model with `artifact` through the wallet and RPC in `common`
/// (`--wallet … --rpc …`); returns the CLI's output, failing the test if it fails.
pub fn register_model(artifact: &str, common: &[&str]) -> String {
    let register = [
        "model",
        "register",
        "--artifact-hash",
        artifact,
        "--architecture",
        "llama",
        "--layer-count",
        "30",
        "--royalty-bps",
        "500",
        "--price-floor",
        "10",
    ];
    cli_ok(&[&register[..], common].concat())
}

/// A current-thread runtime for RPC calls from a test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// The node's status, or `None` while it does not answer.
pub fn status(url: &str) -> Option<Status> {
    rt().block_on(async { Client::new(url).ok()?.status().await.ok() })
}

/// Polls until `url` has executed `height`.
pub fn wait_height(url: &str, height: u64, timeout: Duration) -> Status {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = status(url)
            && status.height >= height
        {
            return status;
        }
        assert!(Instant::now() < deadline, "{url} did not reach height {height} in {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GETs a JSON path from the node.
pub fn get_json(url: &str, path: &str) -> serde_json::Value {
    rt().block_on(async { reqwest::get(format!("{url}{path}")).await?.error_for_status()?.json().await })
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// POSTs `body` to `{url}/tx` over a plain socket and returns the raw response (status line,
/// headers and body), so tests can send what no typed client would.
pub fn post_raw(url: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "POST /tx HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(request.as_bytes());
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}
