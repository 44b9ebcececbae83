//! `geo-enrich`: adds `data.country` by looking up the /24 network of
//! `data.ip` in a host lookup table. The key is the first three octets
//! followed by `.0/24`: ip `"81.2.69.142"` is looked up as `"81.2.69.0/24"`,
//! and the table's value for it becomes `data.country`.
//!
//! Config: `{"table": "geo", "default": "ZZ"}`, both optional. `table` names
//! the host table (default `"geo"`); `default` is the country set when the
//! prefix is not in the table (without it such events pass unchanged).
//!
//! Events without `data.ip`, or whose `data.ip` is not an IPv4 dotted quad
//! (IPv6, a hostname, a number, ...), pass unchanged: that is not an error.

use std::net::Ipv4Addr;

use serde::Deserialize;
use sluice_sdk::{Context, Emit, Event, Stage, StageError};

pub struct GeoEnrich {
    table: String,
    default: Option<String>,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    table: String,
    default: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config { table: "geo".into(), default: None }
    }
}

/// The lookup key of an IPv4 address's /24 network (`"81.2.69.0/24"`), or
/// `None` when `ip` is not a dotted quad.
pub fn prefix_key(ip: &str) -> Option<String> {
    let [a, b, c, _] = ip.parse::<Ipv4Addr>().ok()?.octets();
    Some(format!("{a}.{b}.{c}.0/24"))
}

impl Stage for GeoEnrich {
    type Config = Config;

    fn init(config: Config) -> Result<Self, String> {
        if config.table.is_empty() {
            return Err("table must name a host lookup table, e.g. \"geo\"".into());
        }
        Ok(GeoEnrich { table: config.table, default: config.default })
    }

    fn process(&self, event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        let Some(key) = event.get_str("data.ip").and_then(|ip| prefix_key(&ip)) else {
            return Ok(Emit::Pass);
        };
        let country = sluice_sdk::host::lookup(&self.table, &key).or_else(|| self.default.clone());
        if let Some(country) = country {
            event.set("data.country", country);
        }
        Ok(Emit::Pass)
    }
}

sluice_sdk::export_stage!(GeoEnrich);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::native::{init, run, set_table, Result as Outcome};
    use std::collections::HashMap;

    fn event(id: &str, data: &str) -> Event {
        Event::from_parts(id.into(), "hit".into(), "web".into(), 7, data.into())
    }

    fn country(outcome: &Outcome) -> Option<String> {
        match outcome {
            Outcome::Emitted(events) if events.len() == 1 => events[0].get::<String>("data.country"),
            other => panic!("expected one emitted event, got {other:?}"),
        }
    }

    fn table(name: &str) {
        let entries = HashMap::from([
            ("81.2.69.0/24".to_string(), "GB".to_string()),
            ("8.8.8.0/24".to_string(), "US".to_string()),
        ]);
        set_table(name, entries);
    }

    #[test]
    fn keys() {
        assert_eq!(prefix_key("81.2.69.142").as_deref(), Some("81.2.69.0/24"));
        assert_eq!(prefix_key("0.0.0.0").as_deref(), Some("0.0.0.0/24"));
        assert_eq!(prefix_key("256.1.1.1"), None);
        assert_eq!(prefix_key("1.2.3"), None);
        assert_eq!(prefix_key("1.2.3.4.5"), None);
        assert_eq!(prefix_key("::1"), None);
        assert_eq!(prefix_key("example.com"), None);
    }

    #[test]
    fn enriches_from_the_table() {
        table("geo");
        let stage = init::<GeoEnrich>("{}").unwrap();
        let results = run(
            &stage,
            &Context::default(),
            vec![
                event("a", r#"{"ip":"81.2.69.142","url":"/x"}"#),
                event("b", r#"{"ip":"8.8.8.8"}"#),
                event("c", r#"{"ip":"10.0.0.1"}"#),
                event("d", r#"{"ip":"not-an-ip"}"#),
                event("e", r#"{"ip":1234}"#),
                event("f", r#"{"url":"/y"}"#),
            ],
        );
        assert_eq!(country(&results[0]).as_deref(), Some("GB"));
        assert_eq!(country(&results[1]).as_deref(), Some("US"));
        // Not found, no default; not IPv4; not a string; absent: unchanged.
        for r in &results[2..] {
            assert!(matches!(r, Outcome::Kept), "{r:?}");
        }
        // Other fields survive the enrichment.
        let Outcome::Emitted(events) = &results[0] else { unreachable!() };
        assert_eq!(events[0].get_str("data.url").as_deref(), Some("/x"));
        assert_eq!(events[0].id(), "a");
    }

    #[test]
    fn custom_table_and_default() {
        table("countries");
        let stage = init::<GeoEnrich>(r#"{"table":"countries","default":"ZZ"}"#).unwrap();
        let results = run(
            &stage,
            &Context::default(),
            vec![
                event("a", r#"{"ip":"81.2.69.1"}"#),
                event("b", r#"{"ip":"10.0.0.1"}"#),
                event("c", r#"{"ip":"::1"}"#),
            ],
        );
        assert_eq!(country(&results[0]).as_deref(), Some("GB"));
        assert_eq!(country(&results[1]).as_deref(), Some("ZZ"));
        assert!(matches!(results[2], Outcome::Kept));
    }

    #[test]
    fn rejects_bad_config() {
        assert!(init::<GeoEnrich>(r#"{"table":""}"#).is_err());
        assert!(init::<GeoEnrich>(r#"{"tabel":"geo"}"#).is_err());
    }
}
