//! The daemon's local API as its clients and its server share it: the request and answer
//! types ([`protocol`]), the line framing over a Unix stream ([`wire`]), and the client that
//! `kaipo status`, `kaipo report` and `kaipo live` use ([`client`]). The server that answers
//! lives in `crate::daemon`.

// The types and defaults are needed everywhere (the command line names the default socket);
// the socket code only where Unix sockets exist.
#[cfg(unix)]
pub mod client;
pub mod protocol;
#[cfg(unix)]
pub mod wire;
