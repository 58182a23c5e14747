//! The board's provisioning page: the last 4 KiB of its code memory, left out of the
//! image by memory.x, which the host fills before boot (QEMU: `-device
//! loader,file=PAGE,addr=0x003ff000`). It holds the environment and its key; an empty
//! page means the default environment without authentication.
//!
//! Layout: `HKY1`, key id (1 byte), key length (1 byte, 16 to 64), environment length
//! (1 byte, 1 to 16), one byte of padding, the key (64 bytes, the first `key length`
//! used), the environment's name (16 bytes, the first `environment length` used).

use herald_core::auth::{Key, Keys};
use herald_embedded::Environment;

/// Where the page is (memory.x ends the code memory before it).
const PAGE: *const [u8; 88] = 0x003f_f000 as *const [u8; 88];
const MAGIC: &[u8; 4] = b"HKY1";

/// The environment and its keys, if the page holds them.
pub fn read() -> Option<(Environment, Keys)> {
    // SAFETY: the page is memory of the board that nothing else uses.
    let page = unsafe { core::ptr::read_volatile(PAGE) };
    if &page[..4] != MAGIC {
        return None;
    }
    let (id, key_len, env_len) = (page[4], usize::from(page[5]), usize::from(page[6]));
    let key = Key::new(id, page[8..8 + key_len.min(64)].as_ref()).ok()?;
    let name = core::str::from_utf8(&page[72..72 + env_len.min(16)]).ok()?;
    Some((Environment::new(name).ok()?, Keys::new(key)))
}
