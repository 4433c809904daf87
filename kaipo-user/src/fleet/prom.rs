//! Prometheus's HTTP API (`/api/v1/query`, `/api/v1/query_range`): the questions the fleet
//! views ask and the series they get back.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use super::{
    http::{self, BaseUrl},
    FleetError,
};

/// A series' labels, `__name__` included when Prometheus keeps it.
pub type Labels = BTreeMap<String, String>;

/// One series of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
}

/// One series of a range vector or a range query: `(seconds since the epoch, value)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<(f64, f64)>,
}

/// A Prometheus server.
#[derive(Clone, Debug)]
pub struct Prometheus {
    base: BaseUrl,
    timeout: Duration,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<VectorItem>),
    Matrix(Vec<MatrixItem>),
    /// Answers to queries the fleet views never ask; parsed so that the error says which.
    Scalar(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct VectorItem {
    metric: Labels,
    value: Point,
}

#[derive(Deserialize)]
struct MatrixItem {
    metric: Labels,
    values: Vec<Point>,
}

/// `[1700000000.123, "42"]`.
#[derive(Deserialize)]
struct Point(f64, String);

impl Point {
    fn value(&self) -> f64 {
        match self.1.as_str() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or(f64::NAN),
        }
    }
}

impl Prometheus {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, FleetError> {
        Ok(Self {
            base: BaseUrl::parse(url)?,
            timeout,
        })
    }

    pub fn url(&self) -> String {
        self.base.display()
    }

    /// An instant query evaluated at `at` (seconds since the epoch) whose answer is a vector.
    pub async fn instant(&self, query: &str, at: f64) -> Result<Vec<Sample>, FleetError> {
        let path = format!(
            "/api/v1/query?query={}&time={}",
            http::encode(query),
            seconds(at)
        );
        match self.ask(&path, query).await? {
            Data::Vector(items) => Ok(items
                .into_iter()
                .map(|i| Sample {
                    value: i.value.value(),
                    labels: i.metric,
                })
                .collect()),
            _ => Err(self.unexpected(query, "an instant vector")),
        }
    }

    /// An instant query of a range selector (`x[10m]`): every raw sample in the range.
    pub async fn raw(&self, query: &str, at: f64) -> Result<Vec<Series>, FleetError> {
        let path = format!(
            "/api/v1/query?query={}&time={}",
            http::encode(query),
            seconds(at)
        );
        match self.ask(&path, query).await? {
            Data::Matrix(items) => Ok(series(items)),
            _ => Err(self.unexpected(query, "a range vector")),
        }
    }

    /// A range query: `query` evaluated every `step` seconds from `start` to `end`.
    pub async fn range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>, FleetError> {
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={}&step={}",
            http::encode(query),
            seconds(start),
            seconds(end),
            seconds(step)
        );
        match self.ask(&path, query).await? {
            Data::Matrix(items) => Ok(series(items)),
            _ => Err(self.unexpected(query, "a matrix")),
        }
    }

    async fn ask(&self, path: &str, query: &str) -> Result<Data, FleetError> {
        let (status, body) = http::get(&self.base, path, self.timeout).await?;
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| FleetError::Answer {
            url: self.url(),
            why: format!(
                "HTTP {status}, not a Prometheus API answer ({e}): {}",
                String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
            ),
        })?;
        if answer.status != "success" {
            return Err(FleetError::Query {
                url: self.url(),
                query: query.to_owned(),
                message: answer.error.unwrap_or_else(|| format!("HTTP {status}")),
            });
        }
        answer.data.ok_or_else(|| FleetError::Answer {
            url: self.url(),
            why: "a successful answer without data".into(),
        })
    }

    fn unexpected(&self, query: &str, wanted: &str) -> FleetError {
        FleetError::Query {
            url: self.url(),
            query: query.to_owned(),
            message: format!("the answer is not {wanted}"),
        }
    }
}

fn series(items: Vec<MatrixItem>) -> Vec<Series> {
    items
        .into_iter()
        .map(|i| Series {
            points: i.values.iter().map(|p| (p.0, p.value())).collect(),
            labels: i.metric,
        })
        .collect()
}

/// Seconds as the API takes them, to the millisecond.
fn seconds(s: f64) -> String {
    format!("{s:.3}")
}

/// A PromQL duration of whole milliseconds (`[600000ms]`); at least 1ms.
pub fn duration_ms(ms: i64) -> String {
    format!("{}ms", ms.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_into_series() {
        let v: Answer = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"host":"a","app":"curl"},"value":[1700000000.5,"145600"]}]}}"#,
        )
        .unwrap();
        let Some(Data::Vector(items)) = v.data else {
            panic!("a vector")
        };
        assert_eq!(items[0].value.value(), 145_600.0);
        assert_eq!(items[0].metric["host"], "a");
        let m: Answer = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"matrix","result":[
                {"metric":{},"values":[[1,"1"],[2,"+Inf"]]}]}}"#,
        )
        .unwrap();
        let Some(Data::Matrix(items)) = m.data else {
            panic!("a matrix")
        };
        assert_eq!(series(items)[0].points, [(1.0, 1.0), (2.0, f64::INFINITY)]);
        let e: Answer = serde_json::from_str(
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        )
        .unwrap();
        assert_eq!(e.error.as_deref(), Some("parse error"));
        assert_eq!(duration_ms(600_000), "600000ms");
        assert_eq!(seconds(1.5), "1.500");
    }
}
