//! Payloads that are integers in order (or start with them): one small reader and one
//! small writer for every such layout, instead of a `serde` layout per message, which
//! keeps a client's firmware small. The bytes are exactly those `postcard` reads and
//! writes: each integer a varint, a `u32` field the same bytes as the `u64` of its value.

use super::codec::{ser, take};
use super::error::{DecodeError, EncodeError};
use serde::Deserialize;

/// Writes `fields` in order at the front of `buf`; returns their length.
pub(super) fn put(fields: &[u64], buf: &mut [u8]) -> Result<usize, EncodeError> {
    let mut out = Out::new(buf);
    out.ints(fields)?;
    Ok(out.len)
}

/// A payload written field by field at the front of a buffer, in the bytes `postcard`
/// writes: integers as varints (through `postcard`), a `u8` or `bool` as one byte, a
/// string as its length and bytes, an option as a tag byte (0: none, 1: some) and the
/// value, a fixed-size byte array as its bytes.
pub(super) struct Out<'a> {
    buf: &'a mut [u8],
    /// Bytes written.
    pub(super) len: usize,
}

impl<'a> Out<'a> {
    /// Writes at the front of `buf`.
    pub(super) fn new(buf: &'a mut [u8]) -> Self {
        Out { buf, len: 0 }
    }

    /// An integer (`u16`, `u32` or `u64`: the same varint).
    pub(super) fn int(&mut self, value: u64) -> Result<(), EncodeError> {
        self.ser(&value)
    }

    /// Integers in order.
    pub(super) fn ints(&mut self, values: &[u64]) -> Result<(), EncodeError> {
        for &value in values {
            self.int(value)?;
        }
        Ok(())
    }

    /// A value through its `serde` layout.
    pub(super) fn ser<T: serde::Serialize>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.len += ser(value, rest(self.buf, self.len)?)?;
        Ok(())
    }

    /// Bytes as they are: a `u8`, a `bool`, a tag or a fixed-size array.
    pub(super) fn raw(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let end = self.len + bytes.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(EncodeError::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// A string (or byte string): its length, then its bytes.
    pub(super) fn str(&mut self, text: &[u8]) -> Result<(), EncodeError> {
        self.int(text.len() as u64)?;
        self.raw(text)
    }

    /// An optional integer: a tag byte (0: none, 1: some), then the integer.
    pub(super) fn opt_int(&mut self, value: Option<u64>) -> Result<(), EncodeError> {
        self.raw(&[value.is_some().into()])?;
        value.map_or(Ok(()), |v| self.int(v))
    }

    /// Optional bytes as they are (a fixed-size array): a tag byte, then the bytes.
    pub(super) fn opt_raw(&mut self, bytes: Option<&[u8]>) -> Result<(), EncodeError> {
        self.raw(&[bytes.is_some().into()])?;
        bytes.map_or(Ok(()), |b| self.raw(b))
    }

    /// An optional string: a tag byte, then the string.
    pub(super) fn opt_str(&mut self, text: Option<&str>) -> Result<(), EncodeError> {
        self.raw(&[text.is_some().into()])?;
        text.map_or(Ok(()), |t| self.str(t.as_bytes()))
    }
}

/// `buf` after its first `len` bytes.
fn rest(buf: &mut [u8], len: usize) -> Result<&mut [u8], EncodeError> {
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
