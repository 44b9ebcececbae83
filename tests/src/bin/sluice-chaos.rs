//! `sluice-chaos`: the chaos soak from the command line, for long runs
//! (`scripts/chaos.sh` builds and runs it). One line per round, then the
//! figures per store; exits non-zero when any round lost, duplicated or
//! misplaced an event, got a window wrong or did not drain.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_blackbox_tests::chaos::{ChaosConfig, ChaosStore, Soak, Totals};

const USAGE: &str = "usage: sluice-chaos [--store embedded|redis|both] [--rounds N] [--seed N]
                    [--load-ms N] [--rate EVENTS_PER_S] [--producers N] [--batch N]
                    [--cycle-faults] [--keep-going] [--no-idempotency-keys]

Runs a real `sluice serve` (the binary beside this one, or SLUICE_BIN) under
load through flaky → split-items → schema-check → bot-filter → url-parts →
pii-redact with a tumbling and a sliding window, DLQ replays in flight, and
hits it with a fault at a random moment of each round's load and replay:
SIGKILL of the server; on Redis also CLIENT PAUSE, DEBUG SLEEP and a SIGKILL
and restart of redis-server (AOF, appendfsync always, private port). After
each round: every event accepted is in the output, the DLQ or filtered
exactly once, every window result exact, the queue empty.

Defaults: --store both --rounds 10 --seed <clock> --load-ms 2000 --rate 10000
--producers 2 --batch 100. Stops at the first round with a problem unless
--keep-going. Server logs go to target/chaos/<store>-<seed>.log.
--no-idempotency-keys sends batches without their key: retries after a lost
answer then queue events twice, and the soak reports the duplicates.";

struct Args {
    stores: Vec<ChaosStore>,
    rounds: u32,
    config: ChaosConfig,
    keep_going: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let mut parsed = Args {
        stores: vec![ChaosStore::Embedded, ChaosStore::Redis],
        rounds: 10,
        config: ChaosConfig { seed, ..ChaosConfig::default() },
        keep_going: false,
    };
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, text: String| text.parse::<u64>().map_err(|_| format!("{name}: `{text}` is not a whole number"));
        match flag.as_str() {
            "--store" => {
                parsed.stores = match value("--store")?.as_str() {
                    "embedded" => vec![ChaosStore::Embedded],
                    "redis" => vec![ChaosStore::Redis],
                    "both" => vec![ChaosStore::Embedded, ChaosStore::Redis],
                    other => return Err(format!("--store: `{other}` is not embedded, redis or both")),
                }
            }
            "--rounds" => parsed.rounds = u32::try_from(number("--rounds", value("--rounds")?)?).map_err(|_| "--rounds: too many")?,
            "--seed" => parsed.config.seed = number("--seed", value("--seed")?)?,
            "--load-ms" => parsed.config.load_ms = number("--load-ms", value("--load-ms")?)?.max(100),
            "--rate" => parsed.config.rate = number("--rate", value("--rate")?)?.max(1),
            "--producers" => parsed.config.producers = number("--producers", value("--producers")?)?.clamp(1, 64),
            "--batch" => parsed.config.batch = number("--batch", value("--batch")?)?.clamp(1, 10_000),
            "--cycle-faults" => parsed.config.cycle_faults = true,
            "--keep-going" => parsed.keep_going = true,
            "--no-idempotency-keys" => parsed.config.idempotency_keys = false,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(parsed)
}

/// Points the harness at the `sluice` beside this binary, unless told otherwise.
fn find_server_binary() {
    if std::env::var_os("SLUICE_BIN").is_some() {
        return;
    }
    if let Some(bin) = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("sluice"))).filter(|b| b.is_file()) {
        // Single-threaded here: nothing else reads the environment yet.
        std::env::set_var("SLUICE_BIN", bin);
    }
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("sluice-chaos: {message}\n");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    find_server_binary();
    let log_dir = sluice_blackbox_tests::workspace().join("target/chaos");
    if let Err(e) = std::fs::create_dir_all(&log_dir) {
        eprintln!("sluice-chaos: cannot create {}: {e}", log_dir.display());
        return ExitCode::FAILURE;
    }
    let mut all_clean = true;
    let mut summaries = Vec::new();
    for store in &args.stores {
        let log: PathBuf = log_dir.join(format!("{}-{}.log", store.name(), args.config.seed));
        println!("== {} store, {} rounds, seed {} (server log: {})", store.name(), args.rounds, args.config.seed, log.display());
        let mut soak = Soak::start(*store, args.config.clone(), &log);
        let mut totals = Totals::default();
        for round in 1..=args.rounds {
            match soak.round(round) {
                Ok(report) => {
                    totals.add(&report);
                    let after = report.after_replay.as_ref();
                    println!(
                        "round {round:>4}/{}  {:<13} + {:<13}  accepted {:>6}  out {:>6}  dlq {:>5} replayed {:>5}  lost {} dup {} misplaced {} windows {}  {:>5.1}s",
                        args.rounds,
                        report.faults[0].name(),
                        report.faults[1].name(),
                        report.accepted,
                        after.map_or(0, |a| a.outputs),
                        report.before_replay.dlq,
                        report.replayed,
                        report.before_replay.lost + after.map_or(0, |a| a.lost),
                        report.before_replay.duplicated + after.map_or(0, |a| a.duplicated),
                        report.before_replay.misplaced + after.map_or(0, |a| a.misplaced),
                        report.before_replay.window_mismatches + after.map_or(0, |a| a.window_mismatches),
                        report.elapsed.as_secs_f64()
                    );
                    if !report.is_clean() {
                        all_clean = false;
                        for problem in report.problems() {
                            println!("    {problem}");
                        }
                        if !args.keep_going {
                            println!("stopping at the first round with a problem; the server still runs at {} until exit", soak.server_url());
                            break;
                        }
                    }
                }
                Err(e) => {
                    all_clean = false;
                    println!("round {round}: the soak could not go on: {e}");
                    break;
                }
            }
        }
        all_clean &= totals.is_clean();
        summaries.push(summary(*store, &totals, &soak));
    }
    println!();
    println!("| store | rounds | events accepted | outputs | dead-lettered then replayed | lost | duplicated | misplaced | window mismatches | undrained | faults | 503 / 429 / dropped connections | time |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for line in summaries {
        println!("{line}");
    }
    if all_clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn summary(store: ChaosStore, t: &Totals, soak: &Soak) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let faults: Vec<String> = t.faults.iter().map(|(f, n)| format!("{} {n}", f.name())).collect();
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {:.0} s |",
        store.name(),
        t.rounds,
        t.accepted,
        t.outputs,
        t.dead_lettered,
        t.lost,
        t.duplicated,
        t.misplaced,
        t.window_mismatches,
        t.undrained,
        faults.join(", "),
        soak.stats.answers_503.load(Relaxed),
        soak.stats.answers_429.load(Relaxed),
        soak.stats.connection_errors.load(Relaxed),
        Duration::as_secs_f64(&t.elapsed)
    )
}
