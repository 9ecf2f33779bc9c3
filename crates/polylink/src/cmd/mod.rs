//! One module per subcommand: each owns its clap arguments and a `run`.

pub mod bench;
pub mod bench_pipeline;
pub mod chain;
pub mod gateway;
pub mod generate;
pub mod join;
pub mod keyfile;
pub mod models;
pub mod plan;
pub mod register;
pub mod serve;
pub mod soak;
pub mod stake;
pub mod tiqe;
pub mod tiqe_sampled;
pub mod traffic;
pub mod up;
pub mod validator;
pub mod wallet;
pub mod worker;

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled, so a signal sent right after a process announces it is ready
/// stops it cleanly instead of killing it. Call it inside a Tokio runtime, before announcing.
pub(crate) fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
