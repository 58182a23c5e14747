//! Output and exit through Arm semihosting (QEMU: `-semihosting-config enable=on`):
//! `println!` writes one line to the host, [`exit`] ends the emulator with a status.

use core::fmt::{self, Write};

const SYS_WRITE0: u32 = 0x04;
const SYS_EXIT: u32 = 0x18;
const ADP_STOPPED_APPLICATION_EXIT: u32 = 0x2_0026;
const ADP_STOPPED_RUN_TIME_ERROR_UNKNOWN: u32 = 0x2_0023;

/// One semihosting call.
fn call(operation: u32, argument: usize) {
    // SAFETY: the semihosting trap reads only the argument block it is given.
    unsafe {
        core::arch::asm!("bkpt #0xab", inout("r0") operation => _, in("r1") argument, options(nostack));
    }
}

/// A line being formatted; longer lines are cut.
pub struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    /// An empty line.
    pub const fn new() -> Self {
        Line {
            buf: [0; 256],
            len: 0,
        }
    }

    /// Writes the line and a newline to the host.
    pub fn emit(mut self) {
        let end = self.len.min(self.buf.len() - 2);
        self.buf[end] = b'\n';
        self.buf[end + 1] = 0;
        call(SYS_WRITE0, self.buf.as_ptr() as usize);
    }
}

impl Default for Line {
    fn default() -> Self {
        Line::new()
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - 2 - self.len.min(self.buf.len() - 2);
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Prints one line to the host.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        let mut line = $crate::semihosting::Line::new();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!($($arg)*));
        line.emit();
    }};
}

/// Ends the emulation: status 0 when `success`, 1 otherwise.
pub fn exit(success: bool) -> ! {
    let reason = if success {
        ADP_STOPPED_APPLICATION_EXIT
    } else {
        ADP_STOPPED_RUN_TIME_ERROR_UNKNOWN
    };
    // On 32-bit Arm, SYS_EXIT takes the reason itself, not a block.
    call(SYS_EXIT, reason as usize);
    loop {
        cortex_m::asm::wfi();
    }
}
