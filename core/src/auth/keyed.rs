//! With the `auth` feature: keys, HMAC-SHA-256 tags and replay windows.

use super::*;
use crate::wire::header::{FIXED_LEN, FLAG_AUTHENTICATED, MAGIC};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// One pre-shared key and the id that names it in frames.
#[derive(Clone)]
pub struct Key {
    id: u8,
    secret: heapless::Vec<u8, MAX_KEY_LEN>,
    /// HMAC keyed once with the secret; each frame starts from a copy of it.
    keyed: Hmac<Sha256>,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.secret == other.secret
    }
}

impl Eq for Key {}

impl Key {
    /// A key of 16 to 64 bytes, named `id`.
    pub fn new(id: u8, secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort);
        }
        let secret: heapless::Vec<u8, MAX_KEY_LEN> =
            heapless::Vec::from_slice(secret).map_err(|_| KeyError::TooLong)?;
        // HMAC takes keys of any length.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(&secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        Ok(Key { id, secret, keyed })
    }

    /// The id that names this key in frames.
    pub fn id(&self) -> u8 {
        self.id
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.keyed.clone()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Key {{ id: {}, secret: <{} bytes> }}",
            self.id,
            self.secret.len()
        )
    }
}

/// The keys of an environment: the one this machine signs with, and optionally one more
/// that it also accepts (during a rotation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    signing: Key,
    also_accepted: Option<Key>,
}

impl Keys {
    /// Sign with `signing` and accept only it.
    pub fn new(signing: Key) -> Self {
        Keys {
            signing,
            also_accepted: None,
        }
    }

    /// Also accept frames signed with `other` (rotation: first every machine accepts the
    /// new key, then every machine signs with it, then the old one is dropped).
    pub fn also_accepting(mut self, other: Key) -> Result<Self, KeyError> {
        if other.id == self.signing.id {
            return Err(KeyError::SameId);
        }
        self.also_accepted = Some(other);
        Ok(self)
    }

    /// The key frames are signed with.
    pub fn signing(&self) -> &Key {
        &self.signing
    }

    fn find(&self, id: u8) -> Option<&Key> {
        core::iter::once(&self.signing)
            .chain(self.also_accepted.as_ref())
            .find(|k| k.id == id)
    }
}

fn tag(key: &Key, signed: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = key.mac();
    mac.update(signed);
    let full = mac.finalize().into_bytes();
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&full[..TAG_LEN]);
    tag
}

/// Sets the authentication flag on the frame in `buf[..len]` and appends the trailer.
/// Returns the new length.
pub fn seal(keys: &Keys, counter: u64, buf: &mut [u8], len: usize) -> Result<usize, EncodeError> {
    let total = len + TRAILER_LEN;
    if len < FIXED_LEN || buf.len() < total {
        return Err(EncodeError::BufferTooSmall);
    }
    buf[4] |= FLAG_AUTHENTICATED;
    let key = keys.signing();
    buf[len] = key.id;
    buf[len + 1..len + 9].copy_from_slice(&counter.to_le_bytes());
    let t = tag(key, &buf[..len + 9]);
    buf[len + 9..total].copy_from_slice(&t);
    Ok(total)
}

/// Checks the trailer of an authenticated frame. Returns the frame without its trailer
/// (decode it with [`decode_authenticated`](crate::wire::decode_authenticated)) and the
/// sender's counter. Replays are the caller's to check, with a [`ReplayWindow`].
pub fn open<'a>(keys: &Keys, bytes: &'a [u8]) -> Result<(&'a [u8], u64), AuthError> {
    if bytes.len() < FIXED_LEN + TRAILER_LEN
        || bytes[..2] != MAGIC
        || bytes[4] & FLAG_AUTHENTICATED == 0
    {
        return Err(AuthError::Unauthenticated);
    }
    let len = bytes.len() - TRAILER_LEN;
    let id = bytes[len];
    let key = keys.find(id).ok_or(AuthError::UnknownKey(id))?;
    let mut counter = [0u8; 8];
    counter.copy_from_slice(&bytes[len + 1..len + 9]);
    let expected = tag(key, &bytes[..len + 9]);
    let matches = equal_in_constant_time(&expected, &bytes[len + 9..]);
    if !matches && !cfg!(fuzzing) {
        return Err(AuthError::BadTag);
    }
    Ok((&bytes[..len], u64::from_le_bytes(counter)))
}

/// The counters seen from one sender, in any order: the last [`REPLAY_RECENT`] accepted,
/// and a floor at or below which everything is refused. Counters follow the sender's
/// microsecond clock, so a window of the last N counter *values* would refuse a frame
/// overtaken by one sent N µs later; this one refuses what it has seen, what is older
/// than the oldest it had to forget, and what trails the newest by more than
/// [`REPLAY_SPAN`]. A frame overtaken by more than [`REPLAY_RECENT`] newer ones, or by
/// more than 2 s, is refused (as if lost).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    top: u64,
    floor: u64,
    len: u8,
    recent: [u64; REPLAY_RECENT],
}

impl ReplayWindow {
    /// Accepts `counter` if it was not seen and is not [too old](Self::too_old);
    /// records it.
    pub fn accept(&mut self, counter: u64) -> bool {
        let recent = &self.recent[..usize::from(self.len)];
        if self.too_old(counter) || recent.contains(&counter) {
            return false;
        }
        if usize::from(self.len) == REPLAY_RECENT {
            // Forget the oldest: everything up to it is refused from now on.
            let (oldest, _) = self
                .recent
                .iter()
                .enumerate()
                .min_by_key(|(_, c)| **c)
                .unwrap_or((0, &0));
            self.floor = self.floor.max(self.recent[oldest]);
            self.recent[oldest] = counter;
            if counter <= self.floor {
                return false;
            }
        } else {
            self.recent[usize::from(self.len)] = counter;
            self.len += 1;
        }
        self.top = self.top.max(counter);
        true
    }

    /// The highest counter accepted.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// True when `counter` is refused whether or not it was seen: at or below the floor
    /// (the oldest counter forgotten), or more than [`REPLAY_SPAN`] behind the newest.
    pub fn too_old(&self, counter: u64) -> bool {
        counter <= self.floor || counter.saturating_add(REPLAY_SPAN) < self.top
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(Key::new(1, b"0123456789abcdef0123").unwrap())
    }

    fn frame() -> [u8; 64] {
        let mut buf = [0u8; 64];
        buf[..10].copy_from_slice(b"HR\x01\x23\x00\x04prod");
        buf
    }

    #[test]
    fn seal_then_open() {
        let mut buf = frame();
        let n = seal(&keys(), 77, &mut buf, 12).unwrap();
        assert_eq!(n, 12 + TRAILER_LEN);
        assert_eq!(buf[4], FLAG_AUTHENTICATED);
        let (inner, counter) = open(&keys(), &buf[..n]).unwrap();
        assert_eq!(inner.len(), 12);
        assert_eq!(counter, 77);
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let mut buf = frame();
        let n = seal(&keys(), 77, &mut buf, 12).unwrap();
        for i in 0..n {
            for bit in 0..8 {
                let mut b = buf;
                b[i] ^= 1 << bit;
                assert!(open(&keys(), &b[..n]).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn unknown_and_rotated_keys() {
        let mut buf = frame();
        let old = Key::new(1, b"0123456789abcdef0123").unwrap();
        let new = Key::new(2, b"fedcba9876543210fedc").unwrap();
        let n = seal(&Keys::new(new.clone()), 5, &mut buf, 12).unwrap();
        assert_eq!(
            open(&Keys::new(old.clone()), &buf[..n]),
            Err(AuthError::UnknownKey(2))
        );
        let rotating = Keys::new(old.clone()).also_accepting(new).unwrap();
        assert!(open(&rotating, &buf[..n]).is_ok());
        assert_eq!(
            Keys::new(old.clone()).also_accepting(old),
            Err(KeyError::SameId)
        );
        assert_eq!(Key::new(1, b"short"), Err(KeyError::TooShort));
        assert_eq!(
            open(&keys(), &frame()[..40]),
            Err(AuthError::Unauthenticated)
        );
    }

    #[test]
    fn replay_window() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(100));
        assert!(!w.accept(100));
        assert!(w.accept(98));
        assert!(!w.accept(98));
        assert!(w.accept(99));
        assert!(w.accept(105));
        assert!(!w.accept(100));
        assert!(w.accept(104));
        assert!(w.accept(1_000));
        assert!(!w.accept(105));
        assert!(w.accept(999));
        assert!(w.accept(30), "never seen, and within the span");
        assert!(w.accept(REPLAY_SPAN + 100));
        assert!(!w.accept(99), "more than the span behind the newest");
    }

    #[test]
    fn replay_window_takes_frames_overtaken_by_much_newer_ones() {
        // Counters are microseconds: a frame overtaken by one sent 5 ms later.
        let mut w = ReplayWindow::default();
        assert!(w.accept(1_005_000));
        assert!(w.accept(1_000_000));
        assert!(!w.accept(1_000_000));
        assert!(!w.accept(1_005_000));
    }

    #[test]
    fn replay_window_forgets_the_oldest_and_refuses_below_it() {
        let mut w = ReplayWindow::default();
        for c in 0..REPLAY_RECENT as u64 {
            assert!(w.accept(1_000 + 10 * c));
        }
        assert!(!w.too_old(1_000));
        // One more: the oldest (1,000) is forgotten and becomes the floor.
        assert!(w.accept(5_000));
        assert!(w.too_old(1_000));
        assert!(!w.accept(1_000), "forgotten, and refused");
        assert!(!w.accept(999), "below the floor");
        assert!(
            !w.accept(1_005),
            "older than everything remembered: forgotten at once"
        );
        assert!(w.accept(1_015), "above the new floor (1,010), never seen");
        assert!(!w.accept(5_000));
    }
}
