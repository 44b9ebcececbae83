//! `schema-check`: fails events that lack required fields. Config:
//! `{"required": ["data.url", "data.user_id", ...]}` (at least one path, each
//! inside `data`, nested with dots). An event where any of them is absent or
//! `null` is a non-retryable error naming every missing field, e.g.
//! `missing required fields: data.url, data.user_id`; other events pass
//! unchanged.

use serde::Deserialize;
use sluice_sdk::{Context, Emit, Event, Stage, StageError, Value};

pub struct SchemaCheck {
    required: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    required: Vec<String>,
}

impl Stage for SchemaCheck {
    type Config = Config;

    fn init(config: Config) -> Result<Self, String> {
        if config.required.is_empty() {
            return Err("required must list at least one field, e.g. [\"data.url\"]".into());
        }
        let mut required: Vec<String> = Vec::with_capacity(config.required.len());
        for path in config.required {
            let valid = path.strip_prefix("data.").is_some_and(|rest| rest.split('.').all(|key| !key.is_empty()));
            if !valid {
                return Err(format!("required field {path:?} must be a path inside data, like \"data.url\""));
            }
            if !required.contains(&path) {
                required.push(path);
            }
        }
        Ok(SchemaCheck { required })
    }

    fn process(&self, event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        let missing: Vec<&str> = self
            .required
            .iter()
            .filter(|path| matches!(event.get::<Value>(path), None | Some(Value::Null)))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            Ok(Emit::Pass)
        } else {
            Err(StageError::rejected(format!("missing required fields: {}", missing.join(", "))))
        }
    }
}

sluice_sdk::export_stage!(SchemaCheck);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::native::{init, run, Result as Outcome};

    fn check(config: &str, data: &str) -> Outcome {
        let stage = init::<SchemaCheck>(config).unwrap();
        let event = Event::from_parts("e".into(), "hit".into(), "".into(), 0, data.into());
        run(&stage, &Context::default(), vec![event]).pop().unwrap()
    }

    fn failure(outcome: Outcome) -> StageError {
        match outcome {
            Outcome::Failed(e) => e,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    const CONFIG: &str = r#"{"required":["data.url","data.user_id","data.user.plan"]}"#;

    #[test]
    fn passes_complete_events_unchanged() {
        let outcome = check(CONFIG, r#"{"url":"/x","user_id":0,"user":{"plan":false},"extra":null}"#);
        assert!(matches!(outcome, Outcome::Kept), "{outcome:?}");
    }

    #[test]
    fn names_every_missing_field() {
        let e = failure(check(CONFIG, r#"{"user_id":null,"user":{"name":"x"}}"#));
        assert!(!e.retryable);
        assert_eq!(e.message, "missing required fields: data.url, data.user_id, data.user.plan");

        let e = failure(check(CONFIG, r#"{"url":"/x","user_id":"u","user":"not an object"}"#));
        assert_eq!(e.message, "missing required fields: data.user.plan");
    }

    #[test]
    fn rejects_bad_config() {
        for config in [
            "{}",
            r#"{"required":[]}"#,
            r#"{"required":["url"]}"#,
            r#"{"required":["data."]}"#,
            r#"{"required":["data.a..b"]}"#,
            r#"{"require":["data.url"]}"#,
        ] {
            assert!(init::<SchemaCheck>(config).is_err(), "{config} should be rejected");
        }
        let stage = init::<SchemaCheck>(r#"{"required":["data.a","data.a"]}"#).unwrap();
        assert_eq!(stage.required, ["data.a"]);
    }
}
