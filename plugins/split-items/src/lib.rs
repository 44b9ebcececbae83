//! `split-items`: fan-out. An event whose `data.items` is an array becomes
//! one event per item: ids `<id>:<index>` (index from 0), the input's type,
//! source and timestamp, and as `data` the input's data without `items`,
//! plus `data.item` set to the item. An empty array drops the event; an
//! event without `data.items` passes unchanged; a `data.items` that is not an
//! array (`null` included) is a non-retryable error. No config.

use serde::de::IgnoredAny;
use serde::Deserialize;
use sluice_sdk::{Context, Emit, Event, Stage, StageError, Value};

pub struct SplitItems;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Stage for SplitItems {
    type Config = Config;

    fn init(_config: Config) -> Result<Self, String> {
        Ok(SplitItems)
    }

    fn process(&self, event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        // Check presence on the raw text first so an event without items
        // stays unchanged (and is not copied back to the host).
        if event.get::<IgnoredAny>("data.items").is_none() {
            return Ok(Emit::Pass);
        }
        let (id, kind, source, timestamp) =
            (event.id().to_string(), event.kind().to_string(), event.source().to_string(), event.timestamp());
        let data = event.data_mut();
        let items = match data.remove("items") {
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(StageError::rejected(format!("data.items must be an array, got {}", type_name(&other))))
            }
            // Found by the scan above but not in the parsed object: `data`
            // is not valid JSON (e.g. trailing text after the object).
            None => return Err(StageError::rejected("data.items could not be read: data is not a valid JSON object")),
        };
        if items.is_empty() {
            return Ok(Emit::Drop);
        }
        let outputs = items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let mut out = Event::new(format!("{id}:{index}"), kind.as_str(), timestamp);
                out.set_source(source.as_str());
                // Copy the map whole: `set` would split keys containing dots.
                out.data_mut().clone_from(data);
                out.set("data.item", item);
                out
            })
            .collect();
        Ok(Emit::Many(outputs))
    }
}

sluice_sdk::export_stage!(SplitItems);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::json;
    use sluice_sdk::native::{init, run, Result as Outcome};

    fn event(id: &str, data: &str) -> Event {
        Event::from_parts(id.into(), "order".into(), "shop".into(), 42, data.into())
    }

    fn one(data: &str) -> Outcome {
        let stage = init::<SplitItems>("{}").unwrap();
        run(&stage, &Context::default(), vec![event("o1", data)]).pop().unwrap()
    }

    #[test]
    fn fans_out_one_event_per_item() {
        let Outcome::Emitted(events) = one(r#"{"user":"u1","a.b":1,"items":[{"sku":"x"},"y",3]}"#) else {
            panic!("expected emitted events")
        };
        assert_eq!(events.len(), 3);
        let items = [json!({"sku": "x"}), json!("y"), json!(3)];
        for (index, (e, item)) in events.iter().zip(items).enumerate() {
            assert_eq!(e.id(), format!("o1:{index}"));
            assert_eq!(e.kind(), "order");
            assert_eq!(e.source(), "shop");
            assert_eq!(e.timestamp(), 42);
            // The rest of data is copied whole (a key with a dot in it
            // included, not nested); `items` is gone; `item` is added.
            let data = e.clone().data_mut().clone();
            let expected = json!({"user": "u1", "a.b": 1, "item": item});
            assert_eq!(Value::Object(data), expected);
        }
    }

    #[test]
    fn empty_array_drops() {
        assert!(matches!(one(r#"{"items":[]}"#), Outcome::Dropped));
    }

    #[test]
    fn without_items_passes_unchanged() {
        assert!(matches!(one(r#"{"user":"u1"}"#), Outcome::Kept));
        // Only a top-level `items` counts.
        assert!(matches!(one(r#"{"cart":{"items":[1]}}"#), Outcome::Kept));
    }

    #[test]
    fn non_array_items_is_rejected() {
        for (data, what) in
            [(r#"{"items":"x"}"#, "a string"), (r#"{"items":{"a":1}}"#, "an object"), (r#"{"items":null}"#, "null")]
        {
            match one(data) {
                Outcome::Failed(e) => {
                    assert!(!e.retryable);
                    assert_eq!(e.message, format!("data.items must be an array, got {what}"));
                }
                other => panic!("expected a failure for {data}, got {other:?}"),
            }
        }
    }
}
