//! The stage protocol: what the pipeline head sends a stage and what comes back.
//!
//! One request, one response, in order, on an authenticated encrypted stream ([`crate::transport`]).
//! Hidden states travel as little-endian f32 (a split stays bit-identical to the whole model).
//! Every length is bounded by [`WireLimits`] before anything is allocated, and decoding rejects
//! trailing bytes.

use bytes::{Buf as _, BufMut};
use commonware_codec::{
    Buf, Copying, Decode, Encode, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write,
};
use polylink_types::{Hash32, RECEIPTS_MAX, SignedReceipt};
use std::ops::Range;

/// Bounds on what a peer may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireLimits {
    /// Most rows (tokens) in one forward.
    pub rows_max: u32,
    /// Widest hidden state.
    pub dim_max: u32,
    /// Longest error message.
    pub message_bytes_max: u32,
}

impl Default for WireLimits {
    fn default() -> Self {
        Self { rows_max: 8192, dim_max: 16384, message_bytes_max: 4096 }
    }
}

impl WireLimits {
    /// Largest encoded frame these limits allow (a full batch of hidden states plus headers).
    pub fn frame_bytes_max(&self) -> u32 {
        let hidden = u64::from(self.rows_max) * u64::from(self.dim_max) * 4;
        u32::try_from(hidden + 64 + u64::from(self.message_bytes_max)).unwrap_or(u32::MAX)
    }

    /// Longest echo payload: whatever fits a frame next to its tag and length prefix.
    pub fn echo_bytes_max(&self) -> usize {
        self.frame_bytes_max().saturating_sub(ECHO_HEADER_BYTES_MAX) as usize
    }
}

/// Tag plus the longest varint length prefix of an echo frame.
const ECHO_HEADER_BYTES_MAX: u32 = 1 + 5;

fn read_echo(buf: &mut impl Buf, limits: &WireLimits) -> Result<Vec<u8>, CodecError> {
    Vec::<u8>::read_cfg(buf, &(RangeCfg::new(0..=limits.echo_bytes_max()), ()))
}

/// The rows a forward consumes.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Token ids (the first stage).
    Tokens(Vec<u32>),
    /// `rows × dim` hidden states from the previous stage.
    Hidden {
        /// Width of one row.
        dim: u32,
        /// Row-major values.
        values: Vec<f32>,
    },
}

impl Input {
    /// Number of positions this input covers.
    pub fn rows(&self) -> usize {
        match self {
            Input::Tokens(ids) => ids.len(),
            Input::Hidden { dim, values } => values.len() / (*dim as usize).max(1),
        }
    }
}

/// Sampling done by the last stage, so only a token id travels back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleSpec {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 means all tokens.
    pub top_k: u32,
    /// 1 means all tokens.
    pub top_p: f32,
    /// Seed of the session's sampler, created at its first sampled step (later steps' seeds are
    /// not read): a replay samples the same steps again, so it draws the same tokens.
    pub seed: u64,
}

/// What the head wants back from a forward.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Want {
    /// Hidden states of the input's rows (a stage that is not last).
    Hidden,
    /// A token sampled from the last row's logits (the last stage).
    Sample(SampleSpec),
    /// Nothing: only fill the KV cache (replaying history onto a replacement stage).
    Nothing,
}

/// A request from the pipeline head.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Run the stage on `input` at positions `pos..pos + rows` of `session`.
    Forward {
        /// Session id, chosen by the head.
        session: u64,
        /// The on-chain task the session serves (all zeros for none). Fixed for the life of the
        /// session: the stage signs a receipt for it when the session closes.
        task: Hash32,
        /// Position of the first row; must equal what the stage has cached.
        pos: u32,
        /// The model layers to run: the stage's own range, or a span of it when the worker
        /// stands in for a stage that holds fewer layers. Fixed for the life of the session.
        layers: Range<u32>,
        /// The rows.
        input: Input,
        /// What to return.
        want: Want,
    },
    /// Forget a session and free its KV cache; the stage answers with its signed receipts for
    /// the session's task ([`Response::Receipts`]).
    Close {
        /// Session id.
        session: u64,
    },
    /// Send `payload` back unchanged (a peer measuring the link's latency and bandwidth).
    Echo {
        /// Any bytes, at most [`WireLimits::echo_bytes_max`].
        payload: Vec<u8>,
    },
}

/// Why a stage refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request does not fit this stage (wrong input kind, width, or position).
    BadRequest = 1,
    /// Too many sessions or positions.
    Busy = 2,
    /// The engine failed.
    Engine = 3,
    /// The peer may not run inference here (not a registered gateway).
    Forbidden = 4,
}

/// A stage's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// Hidden states for the next stage.
    Hidden {
        /// Width of one row.
        dim: u32,
        /// Row-major values.
        values: Vec<f32>,
    },
    /// The sampled token.
    Token(u32),
    /// The request was carried out and nothing is returned.
    Done,
    /// The request was refused; the session is unchanged.
    Error {
        /// Category.
        code: ErrorCode,
        /// Human-readable reason.
        message: String,
    },
    /// The payload of an [`Request::Echo`], unchanged.
    Echo(Vec<u8>),
    /// A closed session's receipts, one per layer span this worker ran for it (none when the
    /// session served no task or the stage has no key to sign with).
    Receipts(Vec<SignedReceipt>),
}

fn write_f32s(values: &[f32], buf: &mut impl BufMut) {
    (values.len() as u32).write(buf);
    for v in values {
        buf.put_f32_le(*v);
    }
}

fn read_f32s(buf: &mut impl Buf, dim: u32, limits: &WireLimits) -> Result<Vec<f32>, CodecError> {
    if dim == 0 || dim > limits.dim_max {
        return Err(CodecError::Invalid("hidden", "width out of range"));
    }
    let len = u32::read(buf)? as usize;
    if !len.is_multiple_of(dim as usize) || len / dim as usize > limits.rows_max as usize {
        return Err(CodecError::Invalid("hidden", "row count out of range"));
    }
    if buf.remaining() < len * 4 {
        return Err(CodecError::EndOfBuffer);
    }
    Ok((0..len).map(|_| buf.get_f32_le()).collect())
}

impl Write for Input {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Input::Tokens(ids) => {
                0u8.write(buf);
                ids.write(buf);
            }
            Input::Hidden { dim, values } => {
                1u8.write(buf);
                dim.write(buf);
                write_f32s(values, buf);
            }
        }
    }
}

impl EncodeSize for Input {
    fn encode_size(&self) -> usize {
        1 + match self {
            Input::Tokens(ids) => ids.encode_size(),
            Input::Hidden { values, .. } => 8 + values.len() * 4,
        }
    }
}

impl Read for Input {
    type Cfg = WireLimits;
    fn read_cfg(buf: &mut impl Buf, limits: &WireLimits) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => {
                let ids = Vec::<u32>::read_cfg(buf, &(RangeCfg::new(1..=limits.rows_max as usize), ()))?;
                Ok(Input::Tokens(ids))
            }
            1 => {
                let dim = u32::read(buf)?;
                let values = read_f32s(buf, dim, limits)?;
                if values.is_empty() {
                    return Err(CodecError::Invalid("hidden", "no rows"));
                }
                Ok(Input::Hidden { dim, values })
            }
            tag => Err(CodecError::InvalidEnum(tag)),
        }
    }
}

impl Write for Want {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Want::Hidden => 0u8.write(buf),
            Want::Sample(s) => {
                1u8.write(buf);
                buf.put_f32_le(s.temperature);
                s.top_k.write(buf);
                buf.put_f32_le(s.top_p);
                s.seed.write(buf);
            }
            Want::Nothing => 2u8.write(buf),
        }
    }
}

impl EncodeSize for Want {
    fn encode_size(&self) -> usize {
        match self {
            Want::Sample(_) => 1 + 4 + 4 + 4 + 8,
            _ => 1,
        }
    }
}

impl Read for Want {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(Want::Hidden),
            1 => {
                if buf.remaining() < 4 {
                    return Err(CodecError::EndOfBuffer);
                }
                let temperature = buf.get_f32_le();
                let top_k = u32::read(buf)?;
                if buf.remaining() < 4 {
                    return Err(CodecError::EndOfBuffer);
                }
                let top_p = buf.get_f32_le();
                let seed = u64::read(buf)?;
                if !(temperature.is_finite() && temperature >= 0.0 && top_p > 0.0 && top_p <= 1.0) {
                    return Err(CodecError::Invalid("want", "sampling parameters out of range"));
                }
                Ok(Want::Sample(SampleSpec { temperature, top_k, top_p, seed }))
            }
            2 => Ok(Want::Nothing),
            tag => Err(CodecError::InvalidEnum(tag)),
        }
    }
}

impl Write for Request {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Request::Forward { session, task, pos, layers, input, want } => {
                0u8.write(buf);
                session.write(buf);
                task.write(buf);
                pos.write(buf);
                layers.start.write(buf);
                layers.end.write(buf);
                input.write(buf);
                want.write(buf);
            }
            Request::Close { session } => {
                1u8.write(buf);
                session.write(buf);
            }
            Request::Echo { payload } => {
                2u8.write(buf);
                payload.write(buf);
            }
        }
    }
}

impl EncodeSize for Request {
    fn encode_size(&self) -> usize {
        1 + match self {
            Request::Forward { input, want, .. } => 8 + 32 + 4 + 8 + input.encode_size() + want.encode_size(),
            Request::Close { .. } => 8,
            Request::Echo { payload } => payload.encode_size(),
        }
    }
}

impl Read for Request {
    type Cfg = WireLimits;
    fn read_cfg(buf: &mut impl Buf, limits: &WireLimits) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => {
                let (session, task, pos) = (u64::read(buf)?, Hash32::read(buf)?, u32::read(buf)?);
                let layers = u32::read(buf)?..u32::read(buf)?;
                if layers.is_empty() {
                    return Err(CodecError::Invalid("forward", "empty layer range"));
                }
                Ok(Request::Forward {
                    session,
                    task,
                    pos,
                    layers,
                    input: Input::read_cfg(buf, limits)?,
                    want: Want::read(buf)?,
                })
            }
            1 => Ok(Request::Close { session: u64::read(buf)? }),
            2 => Ok(Request::Echo { payload: read_echo(buf, limits)? }),
            tag => Err(CodecError::InvalidEnum(tag)),
        }
    }
}

impl Write for Response {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Response::Hidden { dim, values } => {
                0u8.write(buf);
                dim.write(buf);
                write_f32s(values, buf);
            }
            Response::Token(id) => {
                1u8.write(buf);
                id.write(buf);
            }
            Response::Done => 2u8.write(buf),
            Response::Error { code, message } => {
                3u8.write(buf);
                (*code as u8).write(buf);
                message.as_bytes().to_vec().write(buf);
            }
            Response::Echo(payload) => {
                4u8.write(buf);
                payload.write(buf);
            }
            Response::Receipts(receipts) => {
                5u8.write(buf);
                receipts.write(buf);
            }
        }
    }
}

impl EncodeSize for Response {
    fn encode_size(&self) -> usize {
        1 + match self {
            Response::Hidden { values, .. } => 8 + values.len() * 4,
            Response::Token(_) => 4,
            Response::Done => 0,
            Response::Error { message, .. } => 1 + message.as_bytes().to_vec().encode_size(),
            Response::Echo(payload) => payload.encode_size(),
            Response::Receipts(receipts) => receipts.encode_size(),
        }
    }
}

impl Read for Response {
    type Cfg = WireLimits;
    fn read_cfg(buf: &mut impl Buf, limits: &WireLimits) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => {
                let dim = u32::read(buf)?;
                Ok(Response::Hidden { dim, values: read_f32s(buf, dim, limits)? })
            }
            1 => Ok(Response::Token(u32::read(buf)?)),
            2 => Ok(Response::Done),
            3 => {
                let code = match u8::read(buf)? {
                    1 => ErrorCode::BadRequest,
                    2 => ErrorCode::Busy,
                    3 => ErrorCode::Engine,
                    4 => ErrorCode::Forbidden,
                    other => return Err(CodecError::InvalidEnum(other)),
                };
                let cfg = (RangeCfg::new(0..=limits.message_bytes_max as usize), ());
                let bytes = Vec::<u8>::read_cfg(buf, &cfg)?;
                let message =
                    String::from_utf8(bytes).map_err(|_| CodecError::Invalid("error", "not utf-8"))?;
                Ok(Response::Error { code, message })
            }
            4 => Ok(Response::Echo(read_echo(buf, limits)?)),
            5 => Ok(Response::Receipts(Vec::<SignedReceipt>::read_cfg(
                buf,
                &(RangeCfg::new(0..=RECEIPTS_MAX), ()),
            )?)),
            tag => Err(CodecError::InvalidEnum(tag)),
        }
    }
}

/// Encodes any wire message.
pub fn encode<T: Encode>(message: &T) -> Vec<u8> {
    message.encode().to_vec()
}

/// Decodes a whole frame as `T`, rejecting trailing bytes.
pub fn decode<T: Read<Cfg = WireLimits>>(frame: &[u8], limits: &WireLimits) -> Result<T, CodecError> {
    T::decode_cfg(Copying(frame), limits)
}
