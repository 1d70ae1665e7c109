//! One poll of one target on one list: the event the reputation source emits.

use serde::{Deserialize, Serialize};

use crate::classify::State;

/// One target × list × poll. Serialised as one JSON object, the event of a
/// `dnsbl` source (field names are the source's fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// When the answer came, ms since the epoch; in JSON `time`, RFC 3339.
    #[serde(rename = "time", with = "rfc3339")]
    pub time_ms: i64,
    /// The list's name in the pipeline (`spamhaus_zen`).
    pub list: String,
    /// The zone queried (`zen.spamhaus.org`), without a query key.
    pub zone: String,
    /// `ip` or `domain`.
    pub kind: String,
    /// The address or domain asked about.
    pub target: String,
    /// `listed`, `clean` or `degraded`; in JSON `status` (`state` is a
    /// column every stored row already has).
    #[serde(rename = "status")]
    pub state: State,
    /// The answer's codes, comma-separated (`127.0.0.2,127.0.0.4`).
    pub code: Option<String>,
    /// The list's names for the codes (`SBL,XBL`), or for a degraded answer
    /// what went wrong.
    pub meaning: Option<String>,
    /// For a degraded answer, why (`rate_limited`, `timeout`,
    /// `resolver_rewrite`, `canary_failed`, ...).
    pub degraded: Option<String>,
    /// The `TXT` answer of a listing (its reason or URL).
    pub txt: Option<String>,
    /// The list's weight, from the pipeline.
    pub weight: f64,
    /// The share of the list's daily query allowance used so far (0 when
    /// unlimited).
    pub budget_used: f64,
    /// The resolver asked (`127.0.0.1:53`).
    pub resolver: String,
    /// How long the `A` query took, 0 when answered from the cache.
    pub latency_ms: u64,
    /// Whether the answer came from the cache (within its TTL).
    pub cached: bool,
}

impl Observation {
    /// The event as the `dnsbl` source's topic carries it: one JSON object.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The message key: a target's observations on a list stay in order on
    /// one partition.
    pub fn key(&self) -> String {
        format!("{}/{}", self.list, self.target)
    }
}

mod rfc3339 {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&engine::value::format_timestamp(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = String::deserialize(d)?;
        engine::value::parse_timestamp(&text).ok_or_else(|| D::Error::custom("not an RFC 3339 timestamp"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_has_every_field_of_a_dnsbl_source_and_reads_back() {
        let obs = Observation {
            time_ms: 1_717_372_800_123,
            list: "zen".into(),
            zone: "zen.example".into(),
            kind: "ip".into(),
            target: "192.0.2.1".into(),
            state: State::Listed,
            code: Some("127.0.0.2".into()),
            meaning: Some("SBL".into()),
            degraded: None,
            txt: Some("why".into()),
            weight: 3.0,
            budget_used: 0.25,
            resolver: "127.0.0.1:53".into(),
            latency_ms: 4,
            cached: false,
        };
        let json: serde_json::Value = serde_json::from_slice(&obs.to_json()).unwrap();
        let object = json.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut fields: Vec<&str> = dsl::dnsbl::OBSERVATION_FIELDS.iter().map(|f| f.name).collect();
        keys.sort();
        fields.sort();
        assert_eq!(keys, fields);
        assert_eq!(json["time"], "2024-06-03T00:00:00.123Z");
        assert_eq!(json["status"], "listed");
        let back: Observation = serde_json::from_slice(&obs.to_json()).unwrap();
        assert_eq!(back, obs);
    }
}
