//! Payloads that are integers in order (or start with them): one small reader and one
//! small writer for every such layout, instead of a `serde` layout per message, which
//! keeps a client's firmware small. The bytes are exactly those `postcard` reads and
//! writes: each integer a varint, a `u32` field the same bytes as the `u64` of its value.

use super::codec::{ser, take};
use super::error::{DecodeError, EncodeError};
use serde::Deserialize;

/// Writes `fields` in order at the front of `buf`; returns their length.
pub(super) fn put(fields: &[u64], buf: &mut [u8]) -> Result<usize, EncodeError> {
    let mut len = 0;
    for field in fields {
        len += ser(field, rest(buf, len)?)?;
    }
    Ok(len)
}

/// `buf` after its first `len` bytes.
pub(super) fn rest(buf: &mut [u8], len: usize) -> Result<&mut [u8], EncodeError> {
    buf.get_mut(len..).ok_or(EncodeError::BufferTooSmall)
}

/// A payload's fields, read in order (what is left is `.0`).
pub(super) struct Fields<'a>(pub(super) &'a [u8]);

impl<'a> Fields<'a> {
    /// The next field: an integer, a `bool`, a string or a byte string.
    pub(super) fn next<T: Deserialize<'a>>(&mut self) -> Result<T, DecodeError> {
        let (value, rest) = take::<T>(self.0)?;
        self.0 = rest;
        Ok(value)
    }

    /// The next field, a `u32`.
    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.next()
    }

    /// The next field, a `u64`.
    pub(super) fn u64(&mut self) -> Result<u64, DecodeError> {
        self.next()
    }

    /// The next field, `N` bytes.
    pub(super) fn bytes<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        for b in out.iter_mut() {
            *b = self.next()?;
        }
        Ok(out)
    }

    /// The next field, an optional string: a tag byte (0: none, 1: some), then the string.
    pub(super) fn option_str(&mut self) -> Result<Option<&'a str>, DecodeError> {
        match self.next::<u8>()? {
            0 => Ok(None),
            1 => self.next().map(Some),
            _ => Err(DecodeError::Malformed),
        }
    }

    /// Every field was read: no byte is left.
    pub(super) fn end(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}
