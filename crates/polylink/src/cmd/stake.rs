//! `polylink stake bond|unbond|withdraw`: manage the wallet account's stake.
use super::wallet::{WalletOpts, send};
use clap::Subcommand;
use polylink_types::{Amount, Bond, TxKind, Unbond};

/// Staking subcommands.
#[derive(Subcommand, Debug)]
pub enum StakeCmd {
    /// Lock balance as stake (one stake backs every role of the account).
    Bond {
        /// Base units to bond.
        #[arg(long)]
        amount: Amount,
    },
    /// Start unbonding stake; it stays slashable until the unbonding period ends.
    Unbond {
        /// Base units to unbond.
        #[arg(long)]
        amount: Amount,
    },
    /// Release every matured unbonding entry back to the balance.
    Withdraw,
}

impl StakeCmd {
    /// Runs the subcommand.
    pub fn run(self, opts: &WalletOpts) -> anyhow::Result<()> {
        let kind = match self {
            Self::Bond { amount } => TxKind::Bond(Bond { amount }),
            Self::Unbond { amount } => TxKind::Unbond(Unbond { amount }),
            Self::Withdraw => TxKind::Withdraw,
        };
        send(opts, kind)
    }
}
