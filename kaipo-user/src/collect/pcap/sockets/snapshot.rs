//! Socket cookies for platforms whose socket listings carry no socket identity (macOS, Windows):
//! a row keeps the cookie it got when first listed for as long as every later listing shows it.

use std::collections::HashMap;

use super::{SocketEntry, SocketKey, SocketOwner};

/// One socket as a listing shows it: endpoints, holder, and whatever tells two sockets with the
/// same endpoints apart (the descriptor number where the listing gives one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListedSocket {
    pub key: SocketKey,
    pub pid: u32,
    pub handle: u64,
}

#[derive(Default)]
pub struct Snapshot {
    cookies: HashMap<ListedSocket, u64>,
    next: u64,
    /// Holder of each cookie in the last listing.
    pub holders: HashMap<u64, u32>,
    /// What the last listing said about each process, where it says anything.
    pub processes: HashMap<u32, SocketOwner>,
}

impl Snapshot {
    /// Takes a new listing: known sockets keep their cookies, new ones get fresh ones, and
    /// sockets no longer listed are forgotten (a socket that comes back is a new socket).
    pub fn update(&mut self, listed: &[ListedSocket], out: &mut Vec<SocketEntry>) {
        let mut cookies = HashMap::with_capacity(listed.len());
        self.holders.clear();
        for socket in listed {
            let cookie = match self.cookies.get(socket) {
                Some(cookie) => *cookie,
                None => {
                    self.next += 1;
                    self.next
                }
            };
            cookies.insert(*socket, cookie);
            self.holders.insert(cookie, socket.pid);
            out.push(SocketEntry {
                key: socket.key,
                cookie,
            });
        }
        self.cookies = cookies;
    }

    pub fn owners(&self, wanted: &[u64], out: &mut Vec<(u64, u32)>) {
        out.extend(
            wanted
                .iter()
                .filter_map(|c| Some((*c, *self.holders.get(c)?)))
                .filter(|(_, pid)| *pid != 0),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(port: u16, pid: u32) -> ListedSocket {
        ListedSocket {
            key: SocketKey {
                proto: 6,
                family: 2,
                local_port: port,
                ..SocketKey::default()
            },
            pid,
            handle: 3,
        }
    }

    #[test]
    fn cookies_last_as_long_as_the_listing_shows_the_socket() {
        let mut snap = Snapshot::default();
        let mut rows = Vec::new();
        snap.update(&[socket(80, 10), socket(443, 10)], &mut rows);
        assert_eq!(
            rows.iter().map(|r| r.cookie).collect::<Vec<_>>(),
            vec![1, 2]
        );
        rows.clear();
        snap.update(&[socket(443, 10), socket(22, 11)], &mut rows);
        assert_eq!(
            rows.iter().map(|r| r.cookie).collect::<Vec<_>>(),
            vec![2, 3]
        );
        rows.clear();
        snap.update(&[socket(80, 10)], &mut rows);
        assert_eq!(rows[0].cookie, 4, "a socket that reappears is a new socket");
        let mut owners = Vec::new();
        snap.owners(&[4, 2], &mut owners);
        assert_eq!(owners, vec![(4, 10)]);
    }
}
