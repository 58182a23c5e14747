//! The deletions made or seen while a read of the store is in flight: a read that
//! started before a deletion does not bring back what it deleted (the registry's
//! records and the subscriber table alike).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Keys deleted since the read in flight started, by the revision of their deletion;
/// nothing is remembered while no read is in flight.
#[derive(Debug)]
pub struct Deletions<K>(Option<HashMap<K, i64>>);

impl<K> Default for Deletions<K> {
    fn default() -> Self {
        Deletions(None)
    }
}

impl<K: Eq + Hash> Deletions<K> {
    /// A read starts: every deletion before now is in what it finds.
    pub fn read_started(&mut self) {
        self.0 = Some(HashMap::new());
    }

    /// `key` was deleted at `revision`: remembered (copied) only while a read is in
    /// flight.
    pub fn deleted<Q>(&mut self, key: &Q, revision: i64)
    where
        Q: ToOwned<Owned = K> + ?Sized,
    {
        if let Some(deleted) = self.0.as_mut() {
            deleted.insert(key.to_owned(), revision);
        }
    }

    /// True when `key` was deleted after `revision` while the read was in flight.
    pub fn after<Q>(&self, key: &Q, revision: i64) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.0
            .as_ref()
            .and_then(|deleted| deleted.get(key))
            .is_some_and(|&at| at > revision)
    }

    /// The read was taken, or failed: nothing more is remembered until the next one.
    pub fn read_ended(&mut self) {
        self.0 = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_deletions_during_a_read_and_after_its_revision_count() {
        let mut d = Deletions::<String>::default();
        d.deleted("before", 5);
        d.read_started();
        d.deleted("during", 12);
        assert!(!d.after("before", 10), "no read was in flight");
        assert!(d.after("during", 10));
        assert!(!d.after("during", 12), "not after the read's own revision");
        d.read_ended();
        assert!(!d.after("during", 10));
        d.deleted("later", 20);
        assert!(!d.after("later", 10), "no read in flight");
    }
}
