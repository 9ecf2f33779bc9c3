/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The model profile lists no layer.
    #[error("the model has no layers")]
    EmptyModel,
    /// No device was offered.
    #[error("no devices to plan over")]
    NoDevices,
    /// Two devices share an id.
    #[error("device id {0:?} appears twice")]
    DuplicateDevice(String),
    /// A link names a device that was not offered.
    #[error("link {from} -> {to} names an unknown device")]
    UnknownLinkDevice {
        /// The sending device.
        from: String,
        /// The receiving device.
        to: String,
    },
    /// A link carries nothing.
    #[error("link {from} -> {to} has zero bandwidth")]
    ZeroBandwidth {
        /// The sending device.
        from: String,
        /// The receiving device.
        to: String,
    },
    /// The devices together lack the memory the model needs.
    #[error(
        "no combination of devices can hold the model: it needs {needed_bytes} bytes with a {context_tokens}-token context, the devices offer {offered_bytes} in all"
    )]
    DoesNotFit {
        /// Weights and cache of the whole model.
        needed_bytes: u64,
        /// Memory of every device together.
        offered_bytes: u64,
        /// The context the cache was sized for.
        context_tokens: u64,
    },
    /// More devices than the search handles.
    #[error("too many devices ({count}); the planner considers at most {max}")]
    TooManyDevices {
        /// Devices offered.
        count: usize,
        /// The most the planner considers.
        max: usize,
    },
}
