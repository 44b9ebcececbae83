//! `legacy-url-parts`: the `url-parts` stage, built the way SDKs before
//! `sluice:stage@0.2.0` built every stage: against `sluice:stage@0.1.0`
//! (`wit/v0.1.0/stage.wit`), importing `sluice:stage/host@0.1.0` and
//! exporting `process` (a `list<event>`) next to `process-packed`. Tests load
//! it to check that the host still accepts and runs such components, on both
//! of its batch paths. `scripts/build-plugins.sh` builds it on its own (a
//! cargo build of several plugins unifies the SDK's features).

#[path = "../../url-parts/src/lib.rs"]
pub mod url_parts;
