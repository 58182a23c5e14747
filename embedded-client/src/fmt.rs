//! One logging shim for `defmt` or `log` (as embassy-net's `fmt.rs`), silent when
//! neither feature is on. Arguments are still evaluated by reference then, so no
//! variable goes unused.
#![allow(unused_macros)]

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("herald-embedded: enable at most one of the `defmt` and `log` features");

macro_rules! herald_log {
    ($level:ident, $s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "log")]
        ::log::$level!($s $(, $x)*);
        #[cfg(feature = "defmt")]
        ::defmt::$level!($s $(, $x)*);
        #[cfg(not(any(feature = "log", feature = "defmt")))]
        let _ = ($(&$x),*);
    }};
}

macro_rules! debug { ($($t:tt)*) => { herald_log!(debug, $($t)*) }; }
macro_rules! info { ($($t:tt)*) => { herald_log!(info, $($t)*) }; }
macro_rules! warn { ($($t:tt)*) => { herald_log!(warn, $($t)*) }; }
