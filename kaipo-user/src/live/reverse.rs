//! The dashboard's fallback names: remotes that no DNS answer named are looked up by reverse
//! DNS ([`ReverseNames`]), off the drawing path, and their names handed to the dashboard with
//! the snapshots ([`LiveUpdate::remote_names`]). On in `kaipo live` unless
//! `--no-reverse-dns`. The daemon does its own in the engine, with `names.reverse_dns`.

use crate::{
    dns::reverse::ReverseNames,
    model::Report,
    ui::{
        source::{HistoryRange, LiveSource, LiveUpdate},
        tabs::remotes::RemoteAddr,
    },
};

/// `inner`'s snapshots, with reverse-DNS names of their unnamed remotes.
pub struct WithReverseNames<S> {
    pub inner: S,
    pub names: ReverseNames,
}

impl<S: LiveSource> LiveSource for WithReverseNames<S> {
    async fn next(&mut self) -> anyhow::Result<Option<LiveUpdate>> {
        let Some(mut update) = self.inner.next().await? else {
            return Ok(None);
        };
        self.names.take_answers();
        for c in update
            .record
            .connections
            .iter()
            .filter(|c| c.remote_name.is_none())
        {
            if let RemoteAddr::Ip(ip) = RemoteAddr::parse(&c.remote) {
                match self.names.name(&ip) {
                    // Sent with every snapshot: a host that went idle and came back has lost
                    // its name on screen.
                    Some(name) => update.remote_names.push((ip, name.to_owned())),
                    None => self.names.ask(ip),
                }
            }
        }
        update.remote_names.sort();
        update.remote_names.dedup();
        Ok(Some(update))
    }

    async fn history(&mut self, range: HistoryRange) -> anyhow::Result<Option<Report>> {
        self.inner.history(range).await
    }
}
