//! One module per subcommand: each owns its clap arguments and a `run`.

pub mod bench;
pub mod generate;
pub mod models;
pub mod plan;
