//! {{name}}: a Sluice stage in Rust.
//!
//! Drops events whose `data.drop` is true, and tags the others with
//! `data.tagged_by` (the config's `tag`, default "{{name}}"). Replace it with
//! your own logic: see the SDK's docs ({{sdk}}/plugin-sdk/src/lib.rs).

use serde::Deserialize;
use sluice_sdk::{Context, Emit, Event, Stage, StageError};

pub struct {{class}} {
    tag: String,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    tag: String,
}

impl Default for Config {
    fn default() -> Self {
        Config { tag: "{{name}}".into() }
    }
}

impl Stage for {{class}} {
    type Config = Config;

    fn init(config: Config) -> Result<Self, String> {
        Ok({{class}} { tag: config.tag })
    }

    fn process(&self, event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        if event.get::<bool>("data.drop") == Some(true) {
            return Ok(Emit::Drop);
        }
        if event.get::<bool>("data.reject") == Some(true) {
            return Err(StageError::rejected("data.reject is set"));
        }
        event.set("data.tagged_by", self.tag.as_str());
        Ok(Emit::Pass)
    }
}

sluice_sdk::export_stage!({{class}});

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::native;

    #[test]
    fn tags_drops_and_rejects() {
        let stage = native::init::<{{class}}>(r#"{"tag": "t"}"#).unwrap();
        let events = [r#"{"a":1}"#, r#"{"drop":true}"#, r#"{"reject":true}"#]
            .iter()
            .enumerate()
            .map(|(i, data)| Event::from_parts(i.to_string(), "hit".into(), String::new(), 0, data.to_string()))
            .collect();
        let results = native::run(&stage, &Context::default(), events);
        assert!(matches!(&results[0], native::Result::Emitted(out) if out[0].get_str("data.tagged_by").as_deref() == Some("t")));
        assert!(matches!(results[1], native::Result::Dropped));
        assert!(matches!(&results[2], native::Result::Failed(e) if !e.retryable));
    }
}
