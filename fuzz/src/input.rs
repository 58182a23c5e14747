//! The byte layout of a state-machine input, shared by the targets and the seed writer.
//!
//! ```text
//! config: CONFIG_LEN bytes (missing bytes read as zero)
//! step:   op (1) | sender (1) | dt in ms (2, LE) | payload length (2, LE) | payload
//! ```
//!
//! A raw step's payload is the datagram itself, so seeds can hold real frames and the
//! dictionary's tokens land where the decoder reads them; a structured step's payload
//! is fed to `arbitrary` and encoded with the real encoder.

/// Bytes of configuration at the front of an input.
pub const CONFIG_LEN: usize = 8;

/// What a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Advance time by `dt` and call `handle_timeout`.
    Timeout,
    /// Jump to `poll_timeout()` and call `handle_timeout`, as a shell does.
    Deadline,
    /// Deliver the payload as the datagram.
    Raw,
    /// Deliver a target-specific structured datagram generated from the payload.
    Structured,
    /// Deliver an arbitrary well-formed frame (any kind, any environment).
    Message,
    /// Deliver a structured datagram with one byte changed or the end cut off.
    Mutated,
    /// A target-specific action (an API call, or a datagram with time going backwards).
    Extra,
}

impl Op {
    /// The op for a byte (every byte means something).
    pub fn from_byte(b: u8) -> Op {
        match b % 8 {
            0 => Op::Timeout,
            1 => Op::Deadline,
            2 => Op::Raw,
            3 | 4 => Op::Structured,
            5 => Op::Message,
            6 => Op::Mutated,
            _ => Op::Extra,
        }
    }

    /// The canonical byte for an op.
    pub fn to_byte(self) -> u8 {
        match self {
            Op::Timeout => 0,
            Op::Deadline => 1,
            Op::Raw => 2,
            Op::Structured => 3,
            Op::Message => 5,
            Op::Mutated => 6,
            Op::Extra => 7,
        }
    }
}

/// One step of an input.
#[derive(Clone, Copy, Debug)]
pub struct Step<'a> {
    /// What to do.
    pub op: Op,
    /// Which sender (an index into the target's small set of addresses).
    pub sender: u8,
    /// Milliseconds to advance before the step.
    pub dt_ms: u16,
    /// The datagram, or the bytes to generate one from.
    pub payload: &'a [u8],
}

/// Splits an input into its configuration and its steps.
pub fn parse(data: &[u8]) -> ([u8; CONFIG_LEN], Steps<'_>) {
    let mut config = [0; CONFIG_LEN];
    let n = data.len().min(CONFIG_LEN);
    config[..n].copy_from_slice(&data[..n]);
    (config, Steps { rest: &data[n..] })
}

/// The steps of an input; a short last step takes what is left.
pub struct Steps<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Steps<'a> {
    type Item = Step<'a>;

    fn next(&mut self) -> Option<Step<'a>> {
        let (&op, rest) = self.rest.split_first()?;
        let mut head = [0u8; 5];
        let n = rest.len().min(5);
        head[..n].copy_from_slice(&rest[..n]);
        let rest = &rest[n..];
        let len = usize::from(u16::from_le_bytes([head[3], head[4]])).min(rest.len());
        let (payload, rest) = rest.split_at(len);
        self.rest = rest;
        Some(Step {
            op: Op::from_byte(op),
            sender: head[0],
            dt_ms: u16::from_le_bytes([head[1], head[2]]),
            payload,
        })
    }
}

/// Writes inputs in the layout [`parse`] reads (for seeds and regression tests).
#[derive(Clone, Debug, Default)]
pub struct InputWriter {
    bytes: Vec<u8>,
}

impl InputWriter {
    /// Starts an input with `config`.
    pub fn new(config: [u8; CONFIG_LEN]) -> Self {
        InputWriter {
            bytes: config.to_vec(),
        }
    }

    /// Appends a step.
    pub fn step(mut self, op: Op, sender: u8, dt_ms: u16, payload: &[u8]) -> Self {
        let len = u16::try_from(payload.len()).expect("payload longer than 65535 bytes");
        self.bytes.push(op.to_byte());
        self.bytes.push(sender);
        self.bytes.extend_from_slice(&dt_ms.to_le_bytes());
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(payload);
        self
    }

    /// The input.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Applies a [`Op::Mutated`] step's mutation: the payload's first byte chooses between
/// cutting the datagram short and flipping bits of one byte, the next two choose where.
/// Returns the mutated datagram and the rest of the payload (to generate it from).
pub fn mutation(payload: &[u8]) -> (Mutation, &[u8]) {
    let mut head = [0u8; 3];
    let n = payload.len().min(3);
    head[..n].copy_from_slice(&payload[..n]);
    let at = usize::from(u16::from_le_bytes([head[1], head[2]]));
    let m = if head[0] & 1 == 0 {
        Mutation::Truncate(at)
    } else {
        Mutation::Flip(at, head[0] | 1)
    };
    (m, &payload[n..])
}

/// A change to a well-formed datagram.
#[derive(Clone, Copy, Debug)]
pub enum Mutation {
    /// Keep the first `n % len` bytes.
    Truncate(usize),
    /// XOR the byte at `i % len` with the mask.
    Flip(usize, u8),
}

impl Mutation {
    /// Applies the change.
    pub fn apply(self, datagram: &mut Vec<u8>) {
        if datagram.is_empty() {
            return;
        }
        let len = datagram.len();
        match self {
            Mutation::Truncate(n) => datagram.truncate(n % len),
            Mutation::Flip(i, mask) => datagram[i % len] ^= mask,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_and_parser_agree() {
        let input = InputWriter::new([1, 2, 3, 4, 5, 6, 7, 8])
            .step(Op::Raw, 3, 500, b"HR\x01")
            .step(Op::Deadline, 0, 0, &[])
            .finish();
        let (config, steps) = parse(&input);
        assert_eq!(config, [1, 2, 3, 4, 5, 6, 7, 8]);
        let steps: Vec<_> = steps.collect();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].op, Op::Raw);
        assert_eq!((steps[0].sender, steps[0].dt_ms), (3, 500));
        assert_eq!(steps[0].payload, b"HR\x01");
        assert_eq!(steps[1].op, Op::Deadline);
    }

    #[test]
    fn short_input_is_padded() {
        let (config, mut steps) = parse(&[9]);
        assert_eq!(config, [9, 0, 0, 0, 0, 0, 0, 0]);
        assert!(steps.next().is_none());
        let (_, steps) = parse(&[0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 200, 0, b'H']);
        let steps: Vec<_> = steps.collect();
        assert_eq!(steps[0].payload, b"H");
    }
}
