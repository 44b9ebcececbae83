//! `pii-redact`: replaces personal fields before events leave the pipeline.
//! Config: `{"fields": ["data.email", ...], "mode": "hash"|"mask", "salt": "..."}`.
//! `hash` replaces a value with the hex SHA-256 of `salt` + value (stable,
//! so counts and joins still work); `mask` keeps an email's first character
//! and domain (`j***@example.com`) and stars out anything else. Absent fields
//! are left absent; non-string values are redacted as their JSON text.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use sluice_sdk::{Context, Emit, Event, Stage, StageError, Value};

#[derive(Deserialize, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Hash,
    Mask,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    fields: Vec<String>,
    mode: Mode,
    salt: String,
}

impl Default for Config {
    fn default() -> Self {
        Config { fields: vec!["data.email".into()], mode: Mode::Hash, salt: String::new() }
    }
}

pub struct PiiRedact {
    fields: Vec<String>,
    mode: Mode,
    salt: String,
}

/// `j***@example.com` for an email, `****` (same length) for anything else.
pub fn mask(value: &str) -> String {
    match value.split_once('@') {
        Some((local, domain)) if !local.is_empty() => {
            let first = local.chars().next().expect("non-empty");
            format!("{first}***@{domain}")
        }
        _ => "*".repeat(value.chars().count()),
    }
}

impl PiiRedact {
    fn redact(&self, value: &str) -> String {
        match self.mode {
            Mode::Hash => {
                let mut hasher = Sha256::new();
                hasher.update(self.salt.as_bytes());
                hasher.update(value.as_bytes());
                // Lower-case hex, as `hex::encode` writes it, without its char-by-char collect.
                let mut text = [0u8; 64];
                hex::encode_to_slice(hasher.finalize(), &mut text).expect("32 bytes are 64 hex digits");
                std::str::from_utf8(&text).expect("hex digits are ASCII").to_owned()
            }
            Mode::Mask => mask(value),
        }
    }
}

impl Stage for PiiRedact {
    type Config = Config;

    fn init(config: Config) -> Result<Self, String> {
        if config.fields.is_empty() {
            return Err("fields must name at least one field, e.g. [\"data.email\"]".into());
        }
        if let Some(bad) = config.fields.iter().find(|f| !f.starts_with("data.") || f.len() <= 5) {
            return Err(format!("field {bad:?} must be a path inside data, like \"data.email\""));
        }
        Ok(PiiRedact { fields: config.fields, mode: config.mode, salt: config.salt })
    }

    fn process(&self, event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        for field in &self.fields {
            let redacted = match event.get::<Value>(field) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => self.redact(&s),
                Some(other) => self.redact(&other.to_string()),
            };
            event.set(field, redacted);
        }
        Ok(Emit::Pass)
    }
}

sluice_sdk::export_stage!(PiiRedact);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask("jane@example.com"), "j***@example.com");
        assert_eq!(mask("12345"), "*****");
    }

    #[test]
    fn hashes_salt_and_value_to_lower_hex() {
        let stage = PiiRedact { fields: vec!["data.email".into()], mode: Mode::Hash, salt: "s".into() };
        assert_eq!(stage.redact("jane@example.com"), "05c0763415f08a7e0f7d379cc08532befd25ad7e9668d1687e7fef22df5945f9");
    }
}
