//! State that only a build with a feature holds: an `Option` in a build with the
//! feature, an [`Absent`] (no bytes, always empty) in one without, used alike through
//! `Option`'s methods and [`Slot`].

use core::marker::PhantomData;

/// Setting and clearing what a slot holds, for `Option` and [`Absent`] alike.
pub(super) trait Slot<T> {
    /// Holds `value` instead of what was held.
    fn set(&mut self, value: T);
    /// Holds nothing.
    fn clear(&mut self);
}

impl<T> Slot<T> for Option<T> {
    fn set(&mut self, value: T) {
        *self = Some(value);
    }

    fn clear(&mut self) {
        *self = None;
    }
}

/// A slot in a build without the feature: holds nothing, takes no memory. The paths
/// that would [`set`](Slot::set) it are never taken there.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "subscribe", allow(dead_code))] // every slot is held then
pub(super) struct Absent<T>(PhantomData<T>);

impl<T> Default for Absent<T> {
    fn default() -> Self {
        Absent(PhantomData)
    }
}

#[cfg_attr(feature = "subscribe", allow(dead_code))]
impl<T> Absent<T> {
    /// Nothing.
    pub(super) fn as_ref(&self) -> Option<&T> {
        None
    }

    /// Nothing.
    pub(super) fn as_mut(&mut self) -> Option<&mut T> {
        None
    }

    /// False.
    #[cfg_attr(feature = "listen", allow(dead_code))] // the snapshot's only
    pub(super) fn is_some(&self) -> bool {
        false
    }

    /// True.
    #[cfg_attr(feature = "listen", allow(dead_code))] // the snapshot's only
    pub(super) fn is_none(&self) -> bool {
        true
    }
}

impl<T> Slot<T> for Absent<T> {
    fn set(&mut self, value: T) {
        debug_assert!(false, "set in a build that does not hold this state");
        drop(value);
    }

    fn clear(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_option_and_an_absent_slot() {
        let mut one: Option<u32> = None;
        one.set(1);
        one.set(2);
        assert_eq!(one, Some(2));
        one.clear();
        assert!(one.is_none());
        let mut none: Absent<[u8; 100]> = Absent::default();
        none.clear();
        assert!(none.as_mut().is_none() && !none.is_some() && none.as_ref().is_none());
        assert_eq!(core::mem::size_of::<Absent<[u8; 100]>>(), 0);
    }
}
