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

/// A chain whose validators run on emulated hosts and deal their key among themselves.
pub struct DkgChain {
    /// The nodes, in host order (killed on drop).
    pub nodes: Vec<Proc>,
    /// Their RPC urls (`http://HOST:8645`).
    pub urls: Vec<String>,
    /// The validators' public keys (hex).
    pub keys: Vec<String>,
    /// Each validator's ceremony output digest.
    pub outputs: Vec<String>,
}

/// Sets up a chain as `README.md` tells validators on separate machines to: each of `hosts`
/// (indices into `lan`) makes its identity on its host (`chain keygen`), one network file lists
/// them with `accounts` funded (`chain genesis`, written to `dir/network.toml`), all run the key
/// ceremony at once on their hosts (`chain dkg`), then their nodes (`chain run`); returns once
/// every node has finalized 3 blocks. Host k's files are under `dir/host{k}`.
pub fn dkg_chain(
    lan: &polylink_node::netem::EmulatedLan,
    hosts: &[usize],
    accounts: &[(String, u128)],
    dir: &Path,
    chain_id: &str,
) -> DkgChain {
    let path = |k: usize, name: &str| dir.join(format!("host{k}")).join(name).to_str().unwrap().to_string();
    let netns = |k: usize| Some(lan.hosts[k].netns.as_str());
    let keys: Vec<String> = hosts
        .iter()
        .map(|&k| {
            let out = command_in(netns(k), &["chain", "keygen", "--key", &path(k, "validator.key")])
                .output()
                .unwrap();
            assert!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
            let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(line["event"], "created");
            line["public_key"].as_str().unwrap().to_string()
        })
        .collect();
    let network = dir.join("network.toml");
    let network = network.to_str().unwrap();
    let mut args: Vec<String> =
        ["chain", "genesis", "--chain-id", chain_id, "--block-interval-ms", "200"].map(String::from).to_vec();
    for (key, &k) in keys.iter().zip(hosts) {
        args.extend(["--validator".into(), format!("{key}@{}:3000", lan.hosts[k].addr)]);
    }
    for (account, amount) in accounts {
        args.extend(["--account".into(), format!("{account}={amount}")]);
    }
    args.extend(["--out".into(), network.into()]);
    cli_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let ceremonies: Vec<Proc> = hosts
        .iter()
        .map(|&k| {
            let rpc = format!("{}:8645", lan.hosts[k].addr);
            let args = [
                "chain",
                "dkg",
                "--key",
                &path(k, "validator.key"),
                "--network",
                network,
                "--rpc",
                &rpc,
                "--data-dir",
                &path(k, "data"),
                "--timeout-s",
                "300",
                "--out",
                &path(k, "config.toml"),
            ];
            let out = std::fs::File::create(path(k, "dkg.out")).unwrap();
            let log = std::fs::File::create(path(k, "dkg.log")).unwrap();
            Proc(command_in(netns(k), &args).env("RUST_LOG", "info").stdout(out).stderr(log).spawn().unwrap())
        })
        .collect();
    let outputs: Vec<String> = ceremonies
        .into_iter()
        .zip(hosts)
        .zip(&keys)
        .map(|((mut proc, &k), key)| {
            let status = proc.0.wait().unwrap();
            let log = std::fs::read_to_string(path(k, "dkg.log")).unwrap_or_default();
            assert!(status.success(), "host {k}'s ceremony failed:\n{log}");
            let line: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path(k, "dkg.out")).unwrap()).unwrap();
            assert_eq!(line["public_key"], key.as_str());
            line["output"].as_str().unwrap().to_string()
        })
        .collect();

    let (nodes, urls): (Vec<Proc>, Vec<String>) = hosts
        .iter()
        .map(|&k| {
            let (node, url) = spawn_node_in(
                netns(k),
                &["chain", "run", "--config", &path(k, "config.toml")],
                Path::new(&path(k, "node.log")),
            );
            assert_eq!(url, format!("http://{}:8645", lan.hosts[k].addr));
            (node, url)
        })
        .unzip();
    for url in &urls {
        wait_height(url, 3, Duration::from_secs(180));
    }
    DkgChain { nodes, urls, keys, outputs }
}

/// `hosts` emulated hosts, shaped with netem, or with tbf where the kernel lacks netem (which it
/// says on stderr); the test fails if none can be made.
pub fn lan(hosts: usize) -> polylink_node::netem::EmulatedLan {
    let (lan, shaping) = polylink_node::netem::EmulatedLan::shaped(hosts)
        .unwrap_or_else(|e| panic!("cannot emulate the hosts this test needs: {e}"));
    if shaping != polylink_node::netem::LAN_NETEM {
        eprintln!("no netem in this kernel; the links are shaped with `{shaping}` instead, no added delay");
    }
    lan
}
