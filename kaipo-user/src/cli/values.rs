//! How the command line spells the library's choices. clap's `ValueEnum` is implemented here
//! for the library's own enums, so no library module depends on clap: the names and help a
//! user sees live with the rest of the command line.

use clap::{builder::PossibleValue, ValueEnum};

use crate::{
    collect::backend::{BackendChoice, IngressHook},
    model::{Dimension, Period},
    report::ExportFormat,
};

/// `impl ValueEnum` for a library enum: each variant with its name on the command line and
/// its help.
macro_rules! value_enum {
    ($ty:ty { $($variant:path => $name:literal, $help:literal;)* }) => {
        impl ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($variant),*]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $($variant => PossibleValue::new($name).help($help),)*
                })
            }
        }
    };
}

value_enum!(BackendChoice {
    BackendChoice::Auto => "auto", "eBPF where it loads (Linux with BTF and privileges), libpcap otherwise";
    BackendChoice::Ebpf => "ebpf", "Only eBPF: fail when it cannot load";
    BackendChoice::Pcap => "pcap", "Only libpcap";
});

value_enum!(IngressHook {
    IngressHook::Tc => "tc", "A TCX (or clsact) ingress classifier: shares the hook, changes nothing in how the interface receives";
    IngressHook::Xdp => "xdp", "XDP: driver mode where the driver has it, else generic mode; TC when the hook is taken";
});

value_enum!(Dimension {
    Dimension::App => "app", "the executable's name";
    Dimension::Process => "process", "each process: pid, name, user, container";
    Dimension::Interface => "interface", "link-layer bytes of each interface";
    Dimension::Remote => "remote", "the remote address";
    Dimension::Service => "service", "what the connection is for, by its server side's port";
    Dimension::User => "user", "the process's user";
    Dimension::Container => "container", "the container a process runs in: its name, else its id";
    Dimension::Pod => "pod", "the Kubernetes pod, namespace/pod";
    Dimension::Unit => "unit", "the systemd unit (nginx.service, user@1000.service)";
    Dimension::Network => "network", "the remote's network, as [names.networks] in the config names it";
    Dimension::Host => "host", "the host of each daemon (with --prometheus only)";
});

value_enum!(Period {
    Period::Hour => "hour", "one row per UTC hour";
    Period::Day => "day", "one row per UTC day";
    Period::Month => "month", "one row per UTC calendar month";
});

value_enum!(ExportFormat {
    ExportFormat::Table => "table", "aligned columns";
    ExportFormat::Json => "json", "one JSON document (schema kaipo.report/1)";
    ExportFormat::Csv => "csv", "RFC 4180";
    ExportFormat::Html => "html", "one self-contained page";
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_name() {
        let names = |vs: &[BackendChoice]| -> Vec<String> {
            vs.iter()
                .filter_map(|v| v.to_possible_value())
                .map(|p| p.get_name().to_owned())
                .collect()
        };
        assert_eq!(
            names(BackendChoice::value_variants()),
            ["auto", "ebpf", "pcap"]
        );
        assert_eq!(
            Dimension::from_str("container", false),
            Ok(Dimension::Container)
        );
        assert_eq!(Period::from_str("month", false), Ok(Period::Month));
        assert_eq!(ExportFormat::from_str("csv", false), Ok(ExportFormat::Csv));
        assert_eq!(IngressHook::from_str("xdp", false), Ok(IngressHook::Xdp));
    }
}
