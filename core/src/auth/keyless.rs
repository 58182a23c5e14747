//! Without the `auth` feature: the same names, but no key can be made, so nothing is
//! ever sealed or opened and replay windows hold nothing.

use super::*;

/// A pre-shared key: none can be made in this build ([`Key::new`] says why).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {}

impl Key {
    /// Always refused: this build has no authentication.
    pub fn new(_id: u8, _secret: &[u8]) -> Result<Self, KeyError> {
        Err(KeyError::NoAuthentication)
    }

    /// The id that names this key in frames.
    pub fn id(&self) -> u8 {
        match *self {}
    }
}

/// The keys of an environment: none exist in this build, so `keys` is always `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keys {}

impl Keys {
    /// Sign with `signing` (which cannot exist in this build).
    pub fn new(signing: Key) -> Self {
        match signing {}
    }

    /// Also accept frames signed with `other`.
    pub fn also_accepting(self, _other: Key) -> Result<Self, KeyError> {
        match self {}
    }

    /// The key frames are signed with.
    pub fn signing(&self) -> &Key {
        match *self {}
    }
}

/// Seals a frame: unreachable in this build, as no [`Keys`] exist.
pub fn seal(
    keys: &Keys,
    _counter: u64,
    _buf: &mut [u8],
    _len: usize,
) -> Result<usize, EncodeError> {
    match *keys {}
}

/// Opens a frame: unreachable in this build, as no [`Keys`] exist.
pub fn open<'a>(keys: &Keys, _bytes: &'a [u8]) -> Result<(&'a [u8], u64), AuthError> {
    match *keys {}
}

/// A replay window that holds nothing: without keys no frame carries a counter, so
/// there is nothing to accept (every counter is refused).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    // Zero-sized, but made like the keyed window: `ReplayWindow::default()`.
    _nothing: (),
}

impl ReplayWindow {
    /// Refuses every counter: no frame carries one in this build.
    pub fn accept(&mut self, _counter: u64) -> bool {
        false
    }

    /// The highest counter accepted: none.
    pub fn top(&self) -> u64 {
        0
    }

    /// Every counter is too old: none can be accepted.
    pub fn too_old(&self, _counter: u64) -> bool {
        true
    }
}
