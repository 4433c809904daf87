//! The fleet views: `kaipo report --prometheus URL` and `kaipo live --prometheus URL` read
//! what Prometheus scraped from every host's `/metrics`, through its HTTP API. kaipo keeps
//! no fleet store of its own: Prometheus is it.

pub mod http;
pub mod live;

pub mod prom;
pub mod report;

use std::time::Duration;

pub use self::prom::Prometheus;

/// How long one question to Prometheus may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{url}: {why}")]
    Url { url: String, why: String },
    #[error("asking Prometheus at {url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Prometheus at {url} did not answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("{url} did not answer in HTTP: is it Prometheus?")]
    NotHttp { url: String },
    #[error("{url}: {why}")]
    Answer { url: String, why: String },
    #[error("Prometheus at {url} refused the query {query}: {message}")]
    Query {
        url: String,
        query: String,
        message: String,
    },
    #[error(
        "Prometheus at {url} has no {metric} series in that range: does it scrape kaipo \
         (deploy/prometheus/prometheus.yml)?"
    )]
    NoSeries { url: String, metric: String },
    #[error("{0}")]
    Dimension(String),
}
