/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the model has no layers")]
    EmptyModel,
    #[error("no devices to plan over")]
    NoDevices,
    #[error("device id {0:?} appears twice")]
    DuplicateDevice(String),
    #[error("link {from} -> {to} names an unknown device")]
    UnknownLinkDevice { from: String, to: String },
    #[error("link {from} -> {to} has zero bandwidth")]
    ZeroBandwidth { from: String, to: String },
    #[error(
        "no combination of devices can hold the model: it needs {needed_bytes} bytes with a {context_tokens}-token context, the devices offer {offered_bytes} in all"
    )]
    DoesNotFit { needed_bytes: u64, offered_bytes: u64, context_tokens: u64 },
    #[error("too many devices ({count}); the planner considers at most {max}")]
    TooManyDevices { count: usize, max: usize },
}
