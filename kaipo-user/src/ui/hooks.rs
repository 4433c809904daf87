//! State changes that come from neither snapshots nor keys: the source ending and names of
//! remote hosts (which also arrive with snapshots, see
//! [`super::source::LiveUpdate::remote_names`]).

use std::net::IpAddr;

use super::{
    state::{LiveState, SourceStatus},
    tabs::remotes::RemoteAddr,
};

impl LiveState {
    pub fn source_status(&self) -> &SourceStatus {
        &self.source
    }

    /// Records that the source ended, or failed with `error`; a paused screen says so too.
    pub fn source_ended(&mut self, error: Option<String>) {
        self.source = error.map_or(SourceStatus::Ended, SourceStatus::Failed);
        if let Some(frozen) = self.frozen.as_mut() {
            frozen.source = self.source.clone();
        }
    }

    /// Names a remote host; returns false when the host is no longer on screen.
    pub fn set_remote_name(&mut self, ip: IpAddr, name: &str) -> bool {
        self.set_remote_names([(ip, name.to_string())]) == 1
    }

    /// Names many remote hosts with one re-sort; returns how many were still on screen.
    pub fn set_remote_names(&mut self, names: impl IntoIterator<Item = (IpAddr, String)>) -> usize {
        let mut named = 0;
        for (ip, name) in names {
            // A name from a DNS answer the process received stays.
            if let Some(remote) = self
                .remotes
                .rows
                .get_mut(&RemoteAddr::Ip(ip))
                .filter(|r| !r.from_dns)
            {
                remote.set_name(Some(name));
                named += 1;
            }
        }
        if named > 0 {
            // Only the Remote hosts table shows names; the others keep their order.
            self.rebuild_tables(false);
        }
        named
    }
}
