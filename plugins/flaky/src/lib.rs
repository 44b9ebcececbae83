//! `flaky`: a test stage that fails transiently. While `ctx.attempt` is
//! below the event's `data.fail_attempts` (an integer; absent or not an
//! integer counts as 0) it answers a retryable error
//! `flaky: failing attempt <attempt> of <fail_attempts>`; otherwise the
//! event passes unchanged. Attempts count from 1, so `fail_attempts: 3`
//! fails attempts 1 and 2 and passes on attempt 3. No config.

use serde::Deserialize;
use sluice_sdk::{Context, Emit, Event, Stage, StageError};

pub struct Flaky;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {}

impl Stage for Flaky {
    type Config = Config;

    fn init(_config: Config) -> Result<Self, String> {
        Ok(Flaky)
    }

    fn process(&self, event: &mut Event, ctx: &Context) -> Result<Emit, StageError> {
        let fail_attempts = event.get::<i64>("data.fail_attempts").unwrap_or(0);
        if i64::from(ctx.attempt) < fail_attempts {
            return Err(StageError::retryable(format!("flaky: failing attempt {} of {}", ctx.attempt, fail_attempts)));
        }
        Ok(Emit::Pass)
    }
}

sluice_sdk::export_stage!(Flaky);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::native::{init, run, Result as Outcome};

    fn attempt(n: u32, data: &str) -> Outcome {
        let stage = init::<Flaky>("{}").unwrap();
        let ctx = Context { attempt: n, ..Context::default() };
        let event = Event::from_parts("e".into(), "hit".into(), "".into(), 0, data.into());
        run(&stage, &ctx, vec![event]).pop().unwrap()
    }

    #[test]
    fn fails_retryably_until_the_attempt_reaches_fail_attempts() {
        for n in 1..3 {
            match attempt(n, r#"{"fail_attempts":3}"#) {
                Outcome::Failed(e) => {
                    assert!(e.retryable);
                    assert_eq!(e.message, format!("flaky: failing attempt {n} of 3"));
                }
                other => panic!("attempt {n}: expected a failure, got {other:?}"),
            }
        }
        assert!(matches!(attempt(3, r#"{"fail_attempts":3}"#), Outcome::Kept));
        assert!(matches!(attempt(4, r#"{"fail_attempts":3}"#), Outcome::Kept));
    }

    #[test]
    fn passes_without_fail_attempts() {
        assert!(matches!(attempt(1, r#"{}"#), Outcome::Kept));
        assert!(matches!(attempt(1, r#"{"fail_attempts":1}"#), Outcome::Kept));
        assert!(matches!(attempt(1, r#"{"fail_attempts":"9"}"#), Outcome::Kept));
        assert!(matches!(attempt(1, r#"{"fail_attempts":-5}"#), Outcome::Kept));
    }
}
