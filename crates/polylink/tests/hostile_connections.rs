#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The chain RPC (`polylink chain dev`) and the gateway (`polylink serve`) as processes, against
//! hostile clients on 127.0.0.1: 10,000 idle connections, slowloris heads, a 16 MB body, and a
//! flood of event-stream subscribers. Each server keeps answering normal requests, closes the
//! idle and half-sent connections itself, answers the body with `413` (read whole, not reset),
//! and refuses subscribers past its limit until some leave.

mod chain_common;

use chain_common::{BIN, Proc, free_ports, spawn_node};
use polylink_protocol::GatewayReady;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Idle connections opened against each server (fewer only where the file-descriptor limit,
/// raised to its hard limit first, cannot hold them; the test says so).
const IDLE: usize = 10_000;

/// Sends `head` and `body` on a new connection and reads the whole answer (the head asks the
/// server to close after it); panics on a reset.
fn exchange(addr: &str, head: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.write_all(head.as_bytes()).expect("the server stopped reading the request");
    stream.write_all(body).expect("the server reset the connection while the body was sent");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("the server reset the connection instead of answering");
    String::from_utf8_lossy(&answer).into_owned()
}

fn get(addr: &str, path: &str) -> String {
    exchange(addr, &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"), b"")
}

/// Whether the server has closed `stream` (read gives end of file or a reset), waiting at most
/// `wait` for it.
fn closed_by_server(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
}

/// The hostile connections every server must survive; `normal` checks a normal request, and
/// `post` is a route that takes a body.
fn survives_hostile_connections(name: &str, addr: &str, idle: usize, normal: &dyn Fn(&str), post: &str) {
    // Idle connections and slowloris heads, all open at once.
    let mut idle_conns: Vec<TcpStream> = (0..idle).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /status HTTP/1.1\r\nHost: t\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    normal(addr);
    // A byte now and then keeps a slowloris head from ever completing; the server's head timeout
    // (10 s) closes it anyway, as it does the idle connections.
    let started = Instant::now();
    let mut open = slow.len();
    while open > 0 && started.elapsed() < Duration::from_secs(90) {
        open =
            slow.iter_mut().map(|s| s.write_all(b"a").is_ok() && s.flush().is_ok()).filter(|ok| *ok).count();
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(slow.iter_mut().all(|s| closed_by_server(s, Duration::from_secs(30))), "{name}: slowloris held");
    let sample = idle_conns.len() / 20;
    for s in idle_conns.iter_mut().step_by(sample.max(1)) {
        assert!(closed_by_server(s, Duration::from_secs(60)), "{name}: an idle connection was never closed");
    }
    drop(idle_conns);
    normal(addr);

    // A body 16 times the limit is read whole and refused with 413.
    let big = vec![b'{'; 16 << 20];
    let head = format!(
        "POST {post} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer hostile-key\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    );
    let answer = exchange(addr, &head, &big);
    assert!(answer.starts_with("HTTP/1.1 413"), "{name} {post}: {answer}");
    normal(addr);
}

#[test]
fn the_rpc_and_the_gateway_keep_serving_under_hostile_connections() {
    let hard = polylink_node::platform::raise_open_files_limit().unwrap_or(1024) as usize;
    // Each idle connection costs this process one descriptor (the server another, in its own).
    let idle = IDLE.min(hard.saturating_sub(1024));
    if idle < IDLE {
        eprintln!("open-files limit {hard}: {idle} idle connections instead of {IDLE}");
    }
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(2, 31);
    let (rpc, p2p) = (format!("127.0.0.1:{base}"), format!("127.0.0.1:{}", base + 1));
    let data = dir.path().join("dev");
    let args = ["chain", "dev", "--data-dir", data.to_str().unwrap(), "--rpc", &rpc, "--p2p", &p2p];
    let (_node, url) = spawn_node(&args, &dir.path().join("node.log"));
    let rpc_addr = url.trim_start_matches("http://").to_string();
    let rpc_normal = |addr: &str| {
        let answer = get(addr, "/status");
        assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("height"), "{answer}");
    };
    survives_hostile_connections("rpc", &rpc_addr, idle, &rpc_normal, "/tx");

    // Event subscribers past the limit are refused with 503; once some leave, a new one is taken.
    let subscribe = || {
        let mut s = TcpStream::connect(&rpc_addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut line = String::new();
        BufReader::new(s.try_clone().unwrap()).read_line(&mut line).unwrap();
        (s, line)
    };
    let subscribers: Vec<(TcpStream, String)> = (0..300).map(|_| subscribe()).collect();
    let taken = subscribers.iter().filter(|(_, l)| l.starts_with("HTTP/1.1 200")).count();
    let refused = subscribers.iter().filter(|(_, l)| l.starts_with("HTTP/1.1 503")).count();
    assert_eq!((taken, refused), (256, 44), "event subscribers taken and refused");
    rpc_normal(&rpc_addr);
    drop(subscribers);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_s, line) = subscribe();
        if line.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "event streams of clients that left were never freed: {line}");
        std::thread::sleep(Duration::from_secs(1));
    }

    // The gateway, serving the model here.
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--threads", "1", "--api-key", "hostile-key"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _gateway = Proc(child);
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| GatewayReady::from_line(&line))
        .expect("polylink serve never said where it listens");
    let gateway_normal = |addr: &str| {
        let body = format!(
            r#"{{"model":"{}","messages":[{{"role":"user","content":"Say hi."}}],"max_tokens":4}}"#,
            ready.model
        );
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer hostile-key\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let answer = exchange(addr, &head, body.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("chat.completion"), "{answer}");
    };
    survives_hostile_connections(
        "gateway",
        &ready.addr.to_string(),
        idle,
        &gateway_normal,
        "/v1/chat/completions",
    );
}
