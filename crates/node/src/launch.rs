//! Starting `polylink stage` worker processes and reading where they listen: what `polylink up`,
//! the pipeline benchmark and the process-level tests use. A stage may run inside a network
//! namespace (an emulated device behind an emulated link, see [`crate::netem`]).

use polylink_pipeline::head::StageSpec;
use polylink_protocol::WorkerReady;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running stage process; killed when dropped.
pub struct StageProcess {
    child: Child,
    /// Where it listens, its key and its layers, as it reported them.
    pub spec: StageSpec,
    /// Its measured per-layer time.
    pub layer_time_us: u64,
}

/// How to start one stage.
#[derive(Debug, Clone)]
pub struct StageLaunch<'a> {
    /// The `polylink` binary.
    pub exe: &'a Path,
    /// The model file.
    pub model: &'a Path,
    /// Layers `a..b`, or the whole model.
    pub layers: Option<std::ops::Range<usize>>,
    /// The worker's 32-byte key seed.
    pub seed: [u8; 32],
    /// Compute threads.
    pub threads: usize,
    /// Pin the process to this CPU (with `taskset`), so emulated devices never share a core.
    pub core: Option<usize>,
    /// Run it inside this network namespace (with `ip netns exec`).
    pub netns: Option<&'a str>,
    /// Address to listen on (default 127.0.0.1 with a free port).
    pub listen: Option<SocketAddr>,
}

impl StageProcess {
    /// Starts the stage and waits until it reports that it is listening.
    pub fn start(launch: &StageLaunch<'_>) -> Result<Self, String> {
        // [ip netns exec NS] [taskset -c CORE] polylink stage ...
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(netns) = launch.netns {
            argv.extend(["ip", "netns", "exec", netns].map(Into::into));
        }
        if let Some(core) = launch.core {
            argv.extend(["taskset".into(), "-c".into(), core.to_string().into()]);
        }
        argv.push(launch.exe.into());
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]);
        command.args(["stage", "--threads", &launch.threads.to_string(), "--model"]).arg(launch.model);
        if let Some(listen) = launch.listen {
            command.args(["--listen", &listen.to_string()]);
        }
        if let Some(layers) = &launch.layers {
            command.args(["--layers", &format!("{}..{}", layers.start, layers.end)]);
        }
        let mut child = command
            .env("POLYLINK_WORKER_SEED", hex::encode(launch.seed))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", launch.exe.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let parsed = read.map_err(|e| e.to_string()).and_then(|_| parse_ready(&line));
        match parsed {
            Ok((spec, layer_time_us)) => Ok(Self { child, spec, layer_time_us }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("stage did not start: {e} (it said {line:?})"))
            }
        }
    }

    /// Kills the process now (as a crash would).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StageProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_ready(line: &str) -> Result<(StageSpec, u64), String> {
    let ready = WorkerReady::from_line(line).ok_or("not a worker's ready line")?;
    let spec = StageSpec::of_ready(&ready).map_err(|e| e.to_string())?;
    Ok((spec, ready.layer_time_us))
}
