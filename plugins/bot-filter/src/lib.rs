//! `bot-filter`: drops events whose `data.ua` contains a configured pattern,
//! case-insensitively. Config: `{"patterns": [...]}` (default bot, spider,
//! crawler). Events without `data.ua` pass.

use serde::Deserialize;
use sluice_sdk::{Context, Emit, Event, Stage, StageError};

pub struct BotFilter {
    /// Lower-cased patterns.
    patterns: Vec<String>,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    patterns: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config { patterns: vec!["bot".into(), "spider".into(), "crawler".into()] }
    }
}

impl Stage for BotFilter {
    type Config = Config;

    fn init(config: Config) -> Result<Self, String> {
        if config.patterns.iter().any(|p| p.is_empty()) {
            return Err("patterns must not contain an empty string (it would match every user agent)".into());
        }
        Ok(BotFilter { patterns: config.patterns.iter().map(|p| p.to_lowercase()).collect() })
    }

    fn process(&self, event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        let Some(ua) = event.get_str("data.ua") else { return Ok(Emit::Pass) };
        let ua = ua.to_lowercase();
        if self.patterns.iter().any(|p| ua.contains(p.as_str())) {
            Ok(Emit::Drop)
        } else {
            Ok(Emit::Pass)
        }
    }
}

sluice_sdk::export_stage!(BotFilter);
