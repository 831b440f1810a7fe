//! The lock-free front of the positive cache: a set-associative table of recently used
//! entries, read with no lock, no await and no shared write.
//!
//! Each set is one cache line: four 32-bit tags (a hash of the id, never 0 when used)
//! and four [`ArcSwapOption`] slots. A read compares the tags, loads the slot whose tag
//! matches and checks the entry's id, so a tag and slot written by two racing writers
//! can only cause a miss, never a wrong entry. Four ways keep conflict misses rare at the
//! sizes used (at least one slot per cached token), where a direct-mapped table of the
//! same size loses about a third of its hits to collisions.
//!
//! Invariants:
//! - A read returns an entry only if the entry's own id is the id asked for: tags only
//!   pick which slots to look at, so a torn tag/slot pair is a miss, never a wrong entry.
//! - A used way's tag is never 0; an empty way's tag is 0.
//! - The table never grows: a full set evicts one of its ways.
//! - It holds no policy: freshness (TTL, invalidation epochs) is the caller's check on
//!   every entry it reads.
//! - The `prefetch` feature's hint is the crate's only `unsafe` code, and reads nothing.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::token::TokenId;

const WAYS: usize = 4;

/// An entry the table can hold: it knows its id.
pub(crate) trait Keyed {
    fn key(&self) -> &TokenId;
}

#[repr(align(64))]
struct Set<T> {
    tags: [AtomicU32; WAYS],
    slots: [ArcSwapOption<T>; WAYS],
}

impl<T> Default for Set<T> {
    fn default() -> Self {
        Self {
            tags: Default::default(),
            slots: Default::default(),
        }
    }
}

pub(crate) struct HotTable<T> {
    sets: Box<[Set<T>]>,
}

impl<T: Keyed> HotTable<T> {
    /// A table with at least `slots` slots (rounded up to a power of two, at least one set).
    pub(crate) fn new(slots: usize) -> Self {
        let sets = (slots.div_ceil(WAYS)).clamp(1, 1 << 22).next_power_of_two();
        Self {
            sets: (0..sets).map(|_| Set::default()).collect(),
        }
    }

    fn locate(&self, id: &TokenId) -> (&Set<T>, u32) {
        let h = id.hot_hash();
        // Low bits pick the set; the high half is the tag (0 marks an empty way).
        let set = &self.sets[(h as usize) & (self.sets.len() - 1)];
        (set, ((h >> 32) as u32) | 1)
    }

    /// Asks for `id`'s set and nothing else: called before other work (checking the
    /// format, hashing the secret) so that the set's cache line is on its way meanwhile.
    pub(crate) fn touch(&self, id: &TokenId) {
        let (set, _) = self.locate(id);
        prefetch(set);
    }

    /// `f` of the entry for `id`, if held, without taking a reference count: the caller
    /// clones the entry only if it keeps it, and its work overlaps the entry's first read.
    pub(crate) fn find<R>(&self, id: &TokenId, f: impl FnOnce(&Arc<T>) -> R) -> Option<R> {
        let (set, tag) = self.locate(id);
        for (t, slot) in set.tags.iter().zip(&set.slots) {
            if t.load(Ordering::Relaxed) == tag {
                let guard = slot.load();
                if let Some(entry) = guard.as_ref().filter(|e| e.key() == id) {
                    return Some(f(entry));
                }
            }
        }
        None
    }

    /// Holds `entry` (replacing an older entry for the same id, else an empty way, else
    /// a way chosen by the id's hash).
    pub(crate) fn put(&self, entry: Arc<T>) {
        let id = *entry.key();
        let (set, tag) = self.locate(&id);
        let mut way = None;
        for (i, (t, slot)) in set.tags.iter().zip(&set.slots).enumerate() {
            let held = t.load(Ordering::Relaxed);
            if held == tag && slot.load().as_ref().is_some_and(|e| *e.key() == id) {
                way = Some(i);
                break;
            }
            if held == 0 && way.is_none() {
                way = Some(i);
            }
        }
        // All ways taken by other ids: evict one, chosen by bits the set index and tag do
        // not use, so colliding ids do not always evict the same way.
        let way = way.unwrap_or((id.hot_hash() >> 20) as usize % WAYS);
        set.slots[way].store(Some(entry));
        set.tags[way].store(tag, Ordering::Release);
    }

    /// Drops the entry for `id`, if held.
    pub(crate) fn remove(&self, id: &TokenId) {
        let (set, tag) = self.locate(id);
        for (t, slot) in set.tags.iter().zip(&set.slots) {
            if t.load(Ordering::Relaxed) == tag
                && slot.load().as_ref().is_some_and(|e| e.key() == id)
            {
                slot.store(None);
                t.store(0, Ordering::Release);
            }
        }
    }

    /// Drops every entry.
    pub(crate) fn clear(&self) {
        for set in self.sets.iter() {
            for (t, slot) in set.tags.iter().zip(&set.slots) {
                slot.store(None);
                t.store(0, Ordering::Release);
            }
        }
    }
}

/// With the `prefetch` feature on x86_64: a `PREFETCHT0` hint, which the CPU does not
/// wait for, so everything up to the lookup (checksum, SHA-256) overlaps the line's
/// arrival. The crate's only `unsafe` code.
#[cfg(all(feature = "prefetch", target_arch = "x86_64"))]
#[allow(unsafe_code)]
#[inline(always)]
fn prefetch<T>(set: &Set<T>) {
    // SAFETY: a prefetch reads nothing the program can observe and cannot fault, and the
    // pointer comes from a live reference.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            std::ptr::from_ref(set).cast(),
        );
    }
}

/// Otherwise a plain load of the set's first tag. It starts the read too, but the CPU
/// cannot retire the work after it until the line arrives, so less of it overlaps.
#[cfg(not(all(feature = "prefetch", target_arch = "x86_64")))]
#[inline(always)]
fn prefetch<T>(set: &Set<T>) {
    std::hint::black_box(set.tags[0].load(Ordering::Relaxed));
}

#[cfg(test)]
mod tests {
    use super::*;

    struct E(TokenId, u32);
    impl Keyed for E {
        fn key(&self) -> &TokenId {
            &self.0
        }
    }

    #[test]
    fn holds_replaces_and_removes() {
        let t = HotTable::new(64);
        let ids: Vec<TokenId> = (0..20).map(|_| TokenId::generate()).collect();
        for (i, id) in ids.iter().enumerate() {
            t.put(Arc::new(E(*id, i as u32)));
        }
        // 20 ids in 64 slots (16 sets of 4): most are held, every hit is the right one.
        let held = ids
            .iter()
            .enumerate()
            .filter(|(i, id)| t.find(id, |e| assert_eq!(e.1, *i as u32)).is_some())
            .count();
        assert!(held >= 16, "only {held} of 20 held");
        t.put(Arc::new(E(ids[0], 99)));
        assert_eq!(t.find(&ids[0], |e| e.1), Some(99));
        t.remove(&ids[0]);
        assert!(t.find(&ids[0], |_| ()).is_none());
        t.clear();
        assert!(ids.iter().all(|id| t.find(id, |_| ()).is_none()));
    }

    #[test]
    fn a_full_set_evicts_rather_than_grows() {
        let t = HotTable::new(4); // one set
        let ids: Vec<TokenId> = (0..10).map(|_| TokenId::generate()).collect();
        for id in &ids {
            t.put(Arc::new(E(*id, 0)));
        }
        let held = ids.iter().filter(|id| t.find(id, |_| ()).is_some()).count();
        assert!((1..=4).contains(&held), "{held} held in a 4-way set");
        assert!(
            t.find(&ids[9], |_| ()).is_some(),
            "the newest entry is held"
        );
    }
}
