//! The batched part of announcements and pages: a one-byte count and that many items.

use super::codec::ser;
use super::error::{DecodeError, EncodeError};
use super::fields::Fields;
use super::message::{ChangeWire, LocationsOut, ServiceWire};
use crate::service::{Service, Version};
use crate::wire::message::validate_name;
use crate::wire::Change;
use core::fmt;
use core::marker::PhantomData;

/// Something that can stand in a batch: a [`Service`] (pages) or a [`Change`]
/// (announcements).
pub trait Item: Sized {
    /// Decodes and validates one item from the front of `bytes`; returns it and the rest.
    fn decode(bytes: &[u8]) -> Result<(Self, &[u8]), DecodeError>;
    /// Encodes the item at the front of `buf`; returns its length.
    fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError>;
}

/// The next item of `bytes`, read by `read`; any error reading it (a short or
/// malformed item) is [`DecodeError::Malformed`].
fn take<'a, T>(
    bytes: &'a [u8],
    read: impl FnOnce(&mut Fields<'a>) -> Result<T, DecodeError>,
) -> Result<(T, &'a [u8]), DecodeError> {
    let mut f = Fields(bytes);
    let wire = read(&mut f).map_err(|_| DecodeError::Malformed)?;
    Ok((wire, f.0))
}

impl Item for Service {
    fn decode(bytes: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        let (wire, rest) = take(bytes, ServiceWire::read)?;
        Ok((wire.validate()?, rest))
    }

    fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        ser(&ServiceWire::from_service(self), buf)
    }
}

impl Item for Change {
    fn decode(bytes: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        // The variant index, then the variant's fields.
        let (wire, rest) = take(bytes, |f| match f.u32()? {
            0 => ServiceWire::read(f).map(ChangeWire::Registered),
            1 => Ok(ChangeWire::Unregistered {
                name: f.next()?,
                version: f.u64()?,
            }),
            _ => Err(DecodeError::Malformed),
        })?;
        let change = match wire {
            ChangeWire::Registered(s) => Change::Registered(s.validate()?),
            ChangeWire::Unregistered { name, version } => Change::Unregistered {
                name: validate_name(name)?,
                version: Version(version),
            },
        };
        Ok((change, rest))
    }

    fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        match self {
            Change::Registered(s) => {
                ser(&ChangeWire::Registered(ServiceWire::from_service(s)), buf)
            }
            Change::Unregistered { name, version } => ser::<ChangeWire<'_, LocationsOut<'_>>>(
                &ChangeWire::Unregistered {
                    name: name.as_str(),
                    version: version.0,
                },
                buf,
            ),
        }
    }
}

/// The validated items of a received batch, decoded one at a time as they are iterated
/// (no copy of the whole batch is ever made).
pub struct Items<'a, T> {
    bytes: &'a [u8],
    remaining: u8,
    _item: PhantomData<T>,
}

impl<'a, T: Item> Items<'a, T> {
    /// Checks a count byte and that many valid items, with nothing left over.
    pub(super) fn validate(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (&count, mut rest) = bytes.split_first().ok_or(DecodeError::Truncated)?;
        for _ in 0..count {
            rest = T::decode(rest)?.1;
        }
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(Items {
            bytes: &bytes[1..],
            remaining: count,
            _item: PhantomData,
        })
    }

    /// How many items are left.
    pub fn remaining(&self) -> usize {
        usize::from(self.remaining)
    }
}

impl<T: Item> Iterator for Items<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.remaining == 0 {
            return None;
        }
        match T::decode(self.bytes) {
            Ok((item, rest)) => {
                self.bytes = rest;
                self.remaining -= 1;
                Some(item)
            }
            // Unreachable: `validate` checked every item.
            Err(_) => {
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining(), Some(self.remaining()))
    }
}

impl<T> Clone for Items<'_, T> {
    fn clone(&self) -> Self {
        Items {
            bytes: self.bytes,
            remaining: self.remaining,
            _item: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Items<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Items({} remaining)", self.remaining)
    }
}
