//! The whole ledger state in sorted maps, its canonical encoding (the snapshot) and its root.

use crate::Params;
use crate::records::{Account, Gateway, Model, SettleKey, Stake, Task, Totals, Validator, Worker};
use polylink_types::codec::{Buf, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write};
use polylink_types::{__bytes::BufMut, BoundedString, CHAIN_ID_LEN_MAX, Hash32, ModelId, PublicKey, TaskId};
use std::collections::{BTreeMap, BTreeSet};

/// Every piece of on-chain state. Maps are sorted, so the encoding is deterministic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// Network name bound into every signature.
    pub chain_id: BoundedString<CHAIN_ID_LEN_MAX>,
    /// Genesis parameters.
    pub params: Params,
    /// Height of the last applied block (0 = genesis).
    pub height: u64,
    /// Timestamp of the last applied block, ms (0 = genesis).
    pub time_ms: u64,
    /// Supply, treasury, slashed, next ids.
    pub totals: Totals,
    /// Balances and nonces.
    pub accounts: BTreeMap<PublicKey, Account>,
    /// Stakes.
    pub stakes: BTreeMap<PublicKey, Stake>,
    /// Models by id.
    pub models: BTreeMap<ModelId, Model>,
    /// The model of each registered artifact hash (one per artifact).
    pub artifacts: BTreeMap<Hash32, ModelId>,
    /// Workers.
    pub workers: BTreeMap<PublicKey, Worker>,
    /// Validators.
    pub validators: BTreeMap<PublicKey, Validator>,
    /// Gateways.
    pub gateways: BTreeMap<PublicKey, Gateway>,
    /// Tasks by id, kept `task_retention_blocks` after they settle (then only in nodes' indexes).
    pub tasks: BTreeMap<TaskId, Task>,
    /// Tasks whose committee is drawn at the next block.
    pub draw_queue: BTreeSet<TaskId>,
    /// Tasks in scoring, by the height from which they settle (once their time has passed too).
    pub settle_queue: BTreeSet<SettleKey>,
    /// Open tasks by their deadline (ms): the escrow of one still open past it goes back.
    pub expiry_queue: BTreeSet<SettleKey>,
    /// Settled or reclaimed tasks by the height at whose end they leave the state.
    pub prune_queue: BTreeSet<SettleKey>,
}

impl State {
    /// sha256 of the canonical encoding. Costs O(state) per call.
    pub fn root(&self) -> Hash32 {
        let mut bytes = Vec::with_capacity(self.encode_size());
        self.write(&mut bytes);
        Hash32::digest(&[b"polylink-state-v1", &bytes])
    }
}

fn any_len() -> RangeCfg<usize> {
    RangeCfg::new(..)
}

impl Write for State {
    fn write(&self, buf: &mut impl BufMut) {
        self.chain_id.write(buf);
        self.params.write(buf);
        self.height.write(buf);
        self.time_ms.write(buf);
        self.totals.write(buf);
        self.accounts.write(buf);
        self.stakes.write(buf);
        self.models.write(buf);
        self.artifacts.write(buf);
        self.workers.write(buf);
        self.validators.write(buf);
        self.gateways.write(buf);
        self.tasks.write(buf);
        self.draw_queue.write(buf);
        self.settle_queue.write(buf);
        self.expiry_queue.write(buf);
        self.prune_queue.write(buf);
    }
}

impl EncodeSize for State {
    fn encode_size(&self) -> usize {
        self.chain_id.encode_size()
            + self.params.encode_size()
            + self.height.encode_size()
            + self.time_ms.encode_size()
            + self.totals.encode_size()
            + self.accounts.encode_size()
            + self.stakes.encode_size()
            + self.models.encode_size()
            + self.artifacts.encode_size()
            + self.workers.encode_size()
            + self.validators.encode_size()
            + self.gateways.encode_size()
            + self.tasks.encode_size()
            + self.draw_queue.encode_size()
            + self.settle_queue.encode_size()
            + self.expiry_queue.encode_size()
            + self.prune_queue.encode_size()
    }
}

impl Read for State {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        // Lengths are unbounded by count but every element consumes bytes, and the codec caps
        // preallocation at the bytes remaining, so a hostile length cannot allocate.
        let map = (any_len(), ((), ()));
        let set = (any_len(), ());
        Ok(Self {
            chain_id: ReadExt::read(buf)?,
            params: ReadExt::read(buf)?,
            height: ReadExt::read(buf)?,
            time_ms: ReadExt::read(buf)?,
            totals: ReadExt::read(buf)?,
            accounts: Read::read_cfg(buf, &map)?,
            stakes: Read::read_cfg(buf, &map)?,
            models: Read::read_cfg(buf, &map)?,
            artifacts: Read::read_cfg(buf, &map)?,
            workers: Read::read_cfg(buf, &map)?,
            validators: Read::read_cfg(buf, &map)?,
            gateways: Read::read_cfg(buf, &map)?,
            tasks: Read::read_cfg(buf, &map)?,
            draw_queue: Read::read_cfg(buf, &set)?,
            settle_queue: Read::read_cfg(buf, &set)?,
            expiry_queue: Read::read_cfg(buf, &set)?,
            prune_queue: Read::read_cfg(buf, &set)?,
        })
    }
}
