//! One module per subcommand: each owns its clap arguments and a `run`.

pub mod models;
pub mod plan;
