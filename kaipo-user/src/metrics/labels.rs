//! The labels of the per-app series (`kaipo_app_bytes_total` and `kaipo_app_packets_total`),
//! chosen in `metrics.labels`.
//!
//! Each distinct combination of the chosen labels' values is one key; the `metrics.top_apps`
//! largest keys have their own series and every other key's traffic goes to the series whose
//! labels all read `other`. So the number of series stays bounded whatever the labels are: a
//! label kind is one more column of the key, never one more dimension of growth. A new kind
//! (a pod, a unit) is one variant here, its name, and where its value comes from.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::store::TrafficRow;

/// One label a per-app series can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelKind {
    /// The executable's name.
    App,
    /// The process's user name (the uid as text when it has no name).
    User,
    /// The container id; empty for a process on the host.
    Container,
    /// What the connection is for, named from its server side (`https`, `dns`, `udp/9999`).
    Service,
    /// The remote address (empty when unknown or many): bounded like every key, by the top N.
    Remote,
}

impl LabelKind {
    pub const ALL: [LabelKind; 5] = [
        Self::App,
        Self::User,
        Self::Container,
        Self::Service,
        Self::Remote,
    ];

    /// The label's name in the exposition.
    pub fn name(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::User => "user",
            Self::Container => "container",
            Self::Service => "service",
            Self::Remote => "remote",
        }
    }

    /// This label's value for a row of traffic, borrowed from the row; a uid without a name
    /// is the only value made.
    pub fn value(self, row: &TrafficRow) -> Cow<'_, str> {
        match self {
            Self::App => Cow::Borrowed(&row.app),
            Self::User => match &row.user {
                Some(u) => Cow::Borrowed(u),
                None => Cow::Owned(row.uid.to_string()),
            },
            Self::Container => Cow::Borrowed(row.container.as_deref().unwrap_or("")),
            Self::Service => Cow::Borrowed(&row.service),
            Self::Remote => Cow::Borrowed(&row.remote),
        }
    }
}

/// The value every label of the series of traffic outside the top N carries.
pub const OTHER: &str = "other";

/// The key of one row: its values for `kinds`, in order.
pub fn key_of(kinds: &[LabelKind], row: &TrafficRow) -> Box<[String]> {
    kinds.iter().map(|k| k.value(row).into_owned()).collect()
}

/// The same key borrowing the row's text, so that grouping an interval's rows allocates once
/// per row, not once per label.
pub fn key_ref<'a>(kinds: &[LabelKind], row: &'a TrafficRow) -> Vec<Cow<'a, str>> {
    kinds.iter().map(|k| k.value(row)).collect()
}

/// Checks a label list from the configuration: at least one, none twice.
pub fn validate(kinds: &[LabelKind]) -> Result<(), String> {
    if kinds.is_empty() {
        return Err(format!(
            "no labels; allowed: one or more of {}",
            names(&LabelKind::ALL)
        ));
    }
    for (i, k) in kinds.iter().enumerate() {
        if kinds[..i].contains(k) {
            return Err(format!("\"{}\" is listed twice", k.name()));
        }
    }
    Ok(())
}

/// `app, user, ...`: the names, for messages.
pub fn names(kinds: &[LabelKind]) -> String {
    kinds
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_chosen_kinds_in_order() {
        let row = TrafficRow {
            app: "curl".into(),
            uid: 1001,
            container: Some("4f2a".into()),
            service: "https".into(),
            ..TrafficRow::default()
        };
        let key = key_of(&[LabelKind::Service, LabelKind::User, LabelKind::App], &row);
        assert_eq!(&*key, ["https", "1001", "curl"]);
        let named = TrafficRow {
            user: Some("www".into()),
            ..TrafficRow::default()
        };
        assert_eq!(
            &*key_of(&[LabelKind::User, LabelKind::Container], &named),
            ["www", ""]
        );
        assert_eq!(&*key_of(&[LabelKind::Container], &row), ["4f2a"]);
    }

    #[test]
    fn a_label_list_needs_one_kind_and_no_repeats() {
        assert_eq!(
            validate(&[]).unwrap_err(),
            "no labels; allowed: one or more of app, user, container, service, remote"
        );
        assert_eq!(
            validate(&[LabelKind::App, LabelKind::User, LabelKind::App]).unwrap_err(),
            "\"app\" is listed twice"
        );
        assert!(validate(&[LabelKind::Container]).is_ok());
    }
}
