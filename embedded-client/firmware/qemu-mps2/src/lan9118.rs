//! A polled smoltcp [`Device`] for the SMSC LAN9118 Ethernet controller of QEMU's MPS2
//! boards: soft reset, the MAC address and MAC control through the indirect MAC CSR
//! registers, frames through the TX/RX data FIFOs and their status FIFOs. No interrupts
//! and no DMA: the poll loop asks for frames.
//!
//! The MAC passes all multicast (the group's frames reach the interface without a hash
//! filter), and QEMU appends the 4-byte FCS to every received frame, which is cut off.
//! The same tokens serve smoltcp's `Device` and (feature `embassy`) embassy-net's
//! `Driver`, which is woken on every SysTick to poll again.

use core::ptr::{read_volatile, write_volatile};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// The LAN9118 of `mps2-an385`/`mps2-an386`.
pub const AN386_BASE: usize = 0x4020_0000;
/// What the ID_REV register reads on the emulated controller.
pub const ID_REV: u32 = 0x0118_0001;
/// The largest Ethernet frame handled (without FCS).
const MTU: usize = 1514;

// Register offsets from the base.
const RX_DATA_FIFO: usize = 0x00;
const TX_DATA_FIFO: usize = 0x20;
const RX_STATUS_FIFO: usize = 0x40;
const TX_STATUS_FIFO: usize = 0x48;
const ID_REV_REG: usize = 0x50;
const IRQ_CFG: usize = 0x54;
const INT_EN: usize = 0x5c;
const TX_CFG: usize = 0x70;
const HW_CFG: usize = 0x74;
const RX_FIFO_INF: usize = 0x7c;
const TX_FIFO_INF: usize = 0x80;
const PMT_CTRL: usize = 0x84;
const MAC_CSR_CMD: usize = 0xa4;
const MAC_CSR_DATA: usize = 0xa8;

// Indirect MAC registers.
const MAC_CR: u32 = 1;
const ADDRH: u32 = 2;
const ADDRL: u32 = 3;

const HW_CFG_SRST: u32 = 1 << 0;
const PMT_CTRL_READY: u32 = 1 << 0;
const TX_CFG_TX_ON: u32 = 1 << 1;
const CSR_BUSY: u32 = 1 << 31;
const MAC_CR_RXEN: u32 = 1 << 2;
const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_MCPAS: u32 = 1 << 19;
const MAC_CR_FDPX: u32 = 1 << 20;
const RX_STATUS_ERROR: u32 = 1 << 15;
const TX_CMD_A_FIRST: u32 = 1 << 13;
const TX_CMD_A_LAST: u32 = 1 << 12;
/// Bounded waits on the controller (it is emulated: each finishes at once).
const SPIN: u32 = 100_000;

/// Why the controller could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// ID_REV read something else: no LAN9118 at that address.
    NotFound(u32),
    /// The soft reset or a MAC register access did not finish.
    Timeout,
}

/// The controller's register block.
#[derive(Clone, Copy)]
struct Registers {
    base: usize,
}

impl Registers {
    fn read(self, offset: usize) -> u32 {
        // SAFETY: `Lan9118::new`'s caller promised the register block.
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    fn write(self, offset: usize, value: u32) {
        // SAFETY: `Lan9118::new`'s caller promised the register block.
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Waits until the `mask` bits of a register read `value`.
    fn wait(self, offset: usize, mask: u32, value: u32) -> Result<(), Error> {
        for _ in 0..SPIN {
            if self.read(offset) & mask == value {
                return Ok(());
            }
        }
        Err(Error::Timeout)
    }

    /// Writes an indirect MAC register.
    fn write_mac(self, register: u32, value: u32) -> Result<(), Error> {
        self.wait(MAC_CSR_CMD, CSR_BUSY, 0)?;
        self.write(MAC_CSR_DATA, value);
        self.write(MAC_CSR_CMD, CSR_BUSY | register);
        self.wait(MAC_CSR_CMD, CSR_BUSY, 0)
    }

    /// Takes the next good frame out of the RX FIFO into `buf`; returns its length
    /// without the FCS. Frames with errors or too long for `buf` are read and dropped.
    fn receive_frame(self, buf: &mut [u8]) -> Option<usize> {
        while (self.read(RX_FIFO_INF) >> 16) & 0xff != 0 {
            let status = self.read(RX_STATUS_FIFO);
            let len = ((status >> 16) & 0x3fff) as usize;
            let keep = status & RX_STATUS_ERROR == 0 && (14 + 4..=buf.len()).contains(&len);
            for i in 0..len.div_ceil(4) {
                let word = self.read(RX_DATA_FIFO).to_le_bytes();
                if keep {
                    let at = i * 4;
                    let n = (len - at).min(4);
                    buf[at..at + n].copy_from_slice(&word[..n]);
                }
            }
            if keep {
                return Some(len - 4);
            }
        }
        None
    }

    /// Sends `frame` as one frame.
    fn send_frame(self, frame: &[u8]) {
        // Drop the status words of frames sent before, so their FIFO never fills.
        while (self.read(TX_FIFO_INF) >> 16) & 0xff != 0 {
            self.read(TX_STATUS_FIFO);
        }
        let len = frame.len() as u32;
        self.write(TX_DATA_FIFO, TX_CMD_A_FIRST | TX_CMD_A_LAST | len);
        self.write(TX_DATA_FIFO, (len << 16) | len);
        for chunk in frame.chunks(4) {
            let mut word = [0; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write(TX_DATA_FIFO, u32::from_le_bytes(word));
        }
    }

    /// Room in the TX data FIFO for a full frame (with its two command words).
    fn can_send(self) -> bool {
        (self.read(TX_FIFO_INF) & 0xffff) as usize >= MTU + 8
    }
}

/// The controller, with one receive and one transmit frame buffer.
pub struct Lan9118 {
    registers: Registers,
    mac: [u8; 6],
    rx: [u8; MTU + 4],
    tx: [u8; MTU],
}

impl Lan9118 {
    /// Resets the controller at `base` and starts it with the MAC address `mac`.
    ///
    /// # Safety
    /// `base` must be the controller's register block, used by nothing else.
    pub unsafe fn new(base: usize, mac: [u8; 6]) -> Result<Self, Error> {
        let r = Registers { base };
        let id = r.read(ID_REV_REG);
        if id != ID_REV {
            return Err(Error::NotFound(id));
        }
        r.write(HW_CFG, HW_CFG_SRST);
        r.wait(HW_CFG, HW_CFG_SRST, 0)?;
        r.wait(PMT_CTRL, PMT_CTRL_READY, PMT_CTRL_READY)?;
        r.write(INT_EN, 0);
        r.write(IRQ_CFG, 0);
        r.write_mac(ADDRL, u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]))?;
        r.write_mac(ADDRH, u32::from_le_bytes([mac[4], mac[5], 0, 0]))?;
        r.write_mac(
            MAC_CR,
            MAC_CR_RXEN | MAC_CR_TXEN | MAC_CR_MCPAS | MAC_CR_FDPX,
        )?;
        r.write(TX_CFG, TX_CFG_TX_ON);
        Ok(Lan9118 {
            registers: r,
            mac,
            rx: [0; MTU + 4],
            tx: [0; MTU],
        })
    }

    /// The MAC address the controller was started with.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// A received frame and room for an answer.
    fn receive(&mut self) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let Lan9118 {
            registers, rx, tx, ..
        } = self;
        let len = registers.receive_frame(rx)?;
        let tx = TxToken {
            registers: *registers,
            buf: tx,
        };
        Some((RxToken(&mut rx[..len]), tx))
    }

    /// Room for a frame, if the TX FIFO has it.
    fn transmit(&mut self) -> Option<TxToken<'_>> {
        self.registers.can_send().then_some(TxToken {
            registers: self.registers,
            buf: &mut self.tx,
        })
    }
}

/// The controller of the an386 with the board's MAC address; ends the emulation with a
/// failure when it is not there.
pub fn start() -> Lan9118 {
    // SAFETY: the an386's LAN9118 is at this address, and only this driver uses it.
    match unsafe { Lan9118::new(AN386_BASE, crate::script::MAC) } {
        Ok(device) => device,
        Err(e) => {
            println!("no LAN9118: {:?}", e);
            crate::semihosting::exit(false)
        }
    }
}

/// A received frame.
pub struct RxToken<'a>(&'a mut [u8]);

/// Room for one frame to send.
pub struct TxToken<'a> {
    registers: Registers,
    buf: &'a mut [u8; MTU],
}

impl TxToken<'_> {
    fn send<R>(self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let frame = &mut self.buf[..len.min(MTU)];
        let result = f(frame);
        self.registers.send_frame(frame);
        result
    }
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.send(len, f)
    }
}

impl Device for Lan9118 {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        Lan9118::receive(self)
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Lan9118::transmit(self)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(1);
        caps
    }
}

/// The embassy-net driver over the same controller.
#[cfg(feature = "embassy")]
mod embassy {
    use super::{Lan9118, RxToken, TxToken, MTU};
    use core::task::Context;
    use embassy_net_driver::{Capabilities, Driver, HardwareAddress, LinkState};
    use embassy_sync::waitqueue::AtomicWaker;

    /// The task polling the controller, woken on every SysTick ([`poll_again`]).
    static WAKER: AtomicWaker = AtomicWaker::new();

    /// Wakes the task that polls the controller (called from SysTick).
    pub fn poll_again() {
        WAKER.wake();
    }

    impl embassy_net_driver::RxToken for RxToken<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
            f(self.0)
        }
    }

    impl embassy_net_driver::TxToken for TxToken<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            self.send(len, f)
        }
    }

    impl Driver for Lan9118 {
        type RxToken<'a> = RxToken<'a>;
        type TxToken<'a> = TxToken<'a>;

        fn receive(&mut self, cx: &mut Context) -> Option<(RxToken<'_>, TxToken<'_>)> {
            WAKER.register(cx.waker());
            Lan9118::receive(self)
        }

        fn transmit(&mut self, cx: &mut Context) -> Option<TxToken<'_>> {
            WAKER.register(cx.waker());
            Lan9118::transmit(self)
        }

        fn link_state(&mut self, _: &mut Context) -> LinkState {
            LinkState::Up
        }

        fn capabilities(&self) -> Capabilities {
            let mut caps = Capabilities::default();
            caps.max_transmission_unit = MTU;
            caps.max_burst_size = Some(1);
            caps
        }

        fn hardware_address(&self) -> HardwareAddress {
            HardwareAddress::Ethernet(self.mac())
        }
    }
}

#[cfg(feature = "embassy")]
pub use embassy::poll_again;
