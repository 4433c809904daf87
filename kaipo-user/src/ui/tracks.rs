//! Remembered rows of one kind, kept from interval to interval and found again by key.
//! What each kind remembers is defined by its tab (`tabs/`).

use std::{collections::HashMap, hash::Hash};

/// A remembered row, found again by its key.
pub trait Track {
    type Key: Clone + Eq + Hash;
    fn key(&self) -> &Self::Key;
}

/// Rows in a vector, so tables can sort plain indices, plus an index by key.
#[derive(Clone, Debug)]
pub struct Tracks<T: Track> {
    items: Vec<T>,
    index: HashMap<T::Key, usize>,
}

impl<T: Track> Default for Tracks<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T: Track> Tracks<T> {
    pub fn items(&self) -> &[T] {
        &self.items
    }

    pub fn items_mut(&mut self) -> &mut [T] {
        &mut self.items
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn position(&self, key: &T::Key) -> Option<usize> {
        self.index.get(key).copied()
    }

    pub fn get(&self, key: &T::Key) -> Option<&T> {
        self.position(key).map(|i| &self.items[i])
    }

    pub fn get_mut(&mut self, key: &T::Key) -> Option<&mut T> {
        self.position(key).map(|i| &mut self.items[i])
    }

    /// The row for `key`, made by `make` when new.
    pub fn entry(&mut self, key: &T::Key, make: impl FnOnce() -> T) -> &mut T {
        let i = match self.index.get(key) {
            Some(&i) => i,
            None => {
                self.items.push(make());
                self.index.insert(key.clone(), self.items.len() - 1);
                self.items.len() - 1
            }
        };
        &mut self.items[i]
    }

    /// Drops rows `keep` refuses; returns whether any went (indices changed then).
    pub fn retain(&mut self, keep: impl FnMut(&T) -> bool) -> bool {
        let before = self.items.len();
        self.items.retain(keep);
        if self.items.len() == before {
            return false;
        }
        self.index = self
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| (item.key().clone(), i))
            .collect();
        true
    }
}
