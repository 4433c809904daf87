//! Writing the Prometheus text exposition format, version 0.0.4:
//! <https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>.

use std::fmt::Write as _;

/// The `Content-Type` a scrape answer carries.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Writes a family's HELP and TYPE lines; samples follow with [`sample`].
pub fn family(out: &mut String, name: &str, kind: Kind, help: &str) {
    let kind = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
    };
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line: `name{l1="v1",...} value`.
pub fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl Value) {
    sample_with(out, name, &[], labels, value);
}

/// One sample line whose labels are `common` (the target's own, such as `host`) then `labels`.
pub fn sample_with(
    out: &mut String,
    name: &str,
    common: &[(&str, &str)],
    labels: &[(&str, &str)],
    value: impl Value,
) {
    out.push_str(name);
    if !(common.is_empty() && labels.is_empty()) {
        out.push('{');
        for (i, (label, v)) in common.iter().chain(labels).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_into(out, v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    value.write(out);
    out.push('\n');
}

/// Sample values: integers exactly, floats as Prometheus reads them.
pub trait Value {
    fn write(&self, out: &mut String);
}

impl Value for u64 {
    fn write(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for f64 {
    fn write(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if *self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

fn escape_label_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_values_exact() {
        let mut out = String::new();
        family(&mut out, "x_total", Kind::Counter, "a \\ b");
        sample(
            &mut out,
            "x_total",
            &[("app", "a\"b\\c\nd"), ("direction", "rx")],
            u64::MAX,
        );
        sample(&mut out, "y", &[], 0.5);
        sample(&mut out, "z", &[], f64::NAN);
        assert_eq!(
            out,
            "# HELP x_total a \\\\ b\n# TYPE x_total counter\n\
             x_total{app=\"a\\\"b\\\\c\\nd\",direction=\"rx\"} 18446744073709551615\ny 0.5\nz NaN\n"
        );
    }
}
