//! Hash tables for what is touched for every socket and flow each interval: keyed by numbers
//! the kernel makes (socket cookies, flow keys, pids), so they use foldhash's fast hasher
//! rather than SipHash. It is still seeded per process, so nobody can aim keys at one bucket.

pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
