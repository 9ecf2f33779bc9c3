//! One module per subcommand: each owns its clap arguments and a `run`.

pub mod bench;
pub mod bench_pipeline;
pub mod chain;
pub mod generate;
pub mod models;
pub mod plan;
pub mod register;
pub mod serve;
pub mod stake;
pub mod tiqe;
pub mod up;
pub mod validator;
pub mod wallet;
pub mod worker;
