//! Child processes of `polylink up`: start one, wait for the line that says it is ready, send its
//! logs to a file, and stop it (politely, then firmly) when the network goes down. On Linux a
//! child dies with its parent even when the parent is killed outright (the parent-death signal;
//! see [`platform`] for what other systems lose).

use crate::NodeError;
use crate::platform::{self, die_with_parent};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// How to start one child.
#[derive(Debug, Clone)]
pub struct Spawn {
    /// Shown in logs and errors (`chain`, `worker-1`, …).
    pub name: String,
    /// The program.
    pub exe: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Extra environment (secrets go here rather than on the command line).
    pub env: Vec<(String, String)>,
    /// Where its stderr (its `tracing` log) and the rest of its stdout go.
    pub log: PathBuf,
}

/// A running child; stopped when dropped.
#[derive(Debug)]
pub struct Child {
    name: String,
    child: std::process::Child,
}

impl Child {
    /// Starts `spawn` and waits up to `timeout` for a stdout line that `ready` accepts; returns the
    /// child and what `ready` made of the line. Stdout keeps being copied to the log afterwards.
    pub fn start<T: Send + 'static>(
        spawn: &Spawn,
        timeout: Duration,
        ready: impl Fn(&str) -> Option<T> + Send + 'static,
    ) -> Result<(Self, T), NodeError> {
        Self::spawn(spawn, ready)?.wait(timeout)
    }

    /// Starts `spawn` without waiting; [`Pending::wait`] waits for its ready line. Several children
    /// can come up at once this way.
    pub fn spawn<T: Send + 'static>(
        spawn: &Spawn,
        ready: impl Fn(&str) -> Option<T> + Send + 'static,
    ) -> Result<Pending<T>, NodeError> {
        let failed = |reason: String| NodeError::Child { name: spawn.name.clone(), reason };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spawn.log)
            .map_err(|e| failed(format!("cannot open its log {}: {e}", spawn.log.display())))?;
        let mut stdout_log = log.try_clone().map_err(|e| failed(e.to_string()))?;
        let mut command = Command::new(&spawn.exe);
        command.args(&spawn.args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        for (k, v) in &spawn.env {
            command.env(k, v);
        }
        die_with_parent(&mut command);
        let mut child = on_spawner_thread(move || command.spawn())
            .map_err(|e| failed(format!("cannot start {}: {e}", spawn.exe.display())))?;
        let stdout = child.stdout.take().ok_or_else(|| failed("no stdout".into()))?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("{}-stdout", spawn.name))
            .spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(stdout_log, "{line}");
                    if let Some(found) = tx.as_ref().and_then(|_| ready(&line))
                        && let Some(tx) = tx.take()
                    {
                        let _ = tx.send(found);
                    }
                }
            })
            .map_err(|e| failed(e.to_string()))?;
        Ok(Pending { child: Self { name: spawn.name.clone(), child }, ready: rx, log: spawn.log.clone() })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How it ended, once it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Asks it to stop (SIGTERM), waits up to `grace`, then kills it.
    pub fn stop(&mut self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        if !platform::terminate(self.child.id()) {
            self.kill();
            return;
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// Kills it now (as a crash would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child started but not yet ready.
#[derive(Debug)]
pub struct Pending<T> {
    child: Child,
    ready: mpsc::Receiver<T>,
    log: PathBuf,
}

impl<T> Pending<T> {
    /// The child, without waiting for its ready line (a restart: whoever needs the child finds
    /// it by its address, which it keeps).
    pub fn detach(self) -> Child {
        self.child
    }

    /// Waits up to `timeout` for the ready line; the child is killed if it does not come.
    pub fn wait(self, timeout: Duration) -> Result<(Child, T), NodeError> {
        let Self { mut child, ready, log } = self;
        let name = child.name.clone();
        let failed = |reason: String| NodeError::Child { name: name.clone(), reason };
        let deadline = Instant::now() + timeout;
        loop {
            match ready.recv_timeout(Duration::from_millis(200)) {
                Ok(found) => return Ok((child, found)),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(failed(format!("exited before it was ready (see {})", log.display())));
                }
            }
            if let Ok(Some(status)) = child.child.try_wait() {
                return Err(failed(format!(
                    "exited with {status} before it was ready (see {})",
                    log.display()
                )));
            }
            if Instant::now() >= deadline {
                child.kill();
                return Err(failed(format!("not ready within {timeout:?} (see {})", log.display())));
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// Runs `f` on one long-lived thread. Linux sends the parent-death signal when the *thread* that
/// forked a child exits, so children are forked there rather than on a runtime thread that may be
/// retired while they run.
fn on_spawner_thread<R: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<R> + Send + 'static,
) -> std::io::Result<R> {
    type Job = Box<dyn FnOnce() + Send>;
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let started = std::thread::Builder::new().name("polylink-spawner".into()).spawn(move || {
            for job in rx {
                job();
            }
        });
        if let Err(e) = started {
            tracing::error!("cannot start the spawner thread: {e}");
        }
        Mutex::new(tx)
    });
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = done_tx.send(f());
    });
    spawner
        .lock()
        .map_err(|_| std::io::Error::other("spawner lock poisoned"))?
        .send(job)
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    done_rx.recv().map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

/// The `polylink` binary: the one running now (`up` starts copies of itself).
pub fn polylink_exe() -> Result<PathBuf, NodeError> {
    std::env::current_exe().map_err(|e| NodeError::Child { name: "polylink".into(), reason: e.to_string() })
}

/// `dir/name.log`.
pub fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}
