//! What a bench run cost in CPU: the `sluice serve` processes' own time
//! (`/proc/<pid>/stat`, Linux) and the Redis masters' (`INFO cpu` on every
//! master), read before and after a phase, so the README's capacity plan
//! rests on measured microseconds per event, not on guesses.

use anyhow::Context as _;

/// CPU seconds used so far by the processes `pids` and by Redis's masters.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CpuReading {
    pub sluice: f64,
    pub redis: f64,
}

impl CpuReading {
    /// Reads the counters now. On the embedded store there is no Redis (0).
    pub(super) fn now(pids: &[u32], redis_url: Option<&str>) -> anyhow::Result<CpuReading> {
        let mut sluice = 0.0;
        for pid in pids {
            sluice += process_cpu_seconds(*pid)?;
        }
        let redis = match redis_url {
            Some(url) => redis_cpu_seconds(url)?,
            None => 0.0,
        };
        Ok(CpuReading { sluice, redis })
    }

    /// Microseconds of CPU per event between `self` (earlier) and `later`,
    /// for (sluice, Redis).
    pub(super) fn per_event_us(&self, later: &CpuReading, events: u64) -> (f64, f64) {
        let n = events.max(1) as f64;
        ((later.sluice - self.sluice) * 1e6 / n, (later.redis - self.redis) * 1e6 / n)
    }
}

/// utime + stime of a process, in seconds (fields 14 and 15 of
/// `/proc/<pid>/stat`, in clock ticks of 1/100 s).
fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count from after its ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).context("malformed /proc stat");
    // Fields 14 and 15 are at 11 and 12 once the first two are gone.
    Ok((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

/// `used_cpu_user + used_cpu_sys` summed over every master.
fn redis_cpu_seconds(url: &str) -> anyhow::Result<f64> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut conn = crate::store::redis::connect_url(url).await?;
        let info = ::redis::cmd("INFO").arg("cpu").clone();
        let mut total = 0.0;
        for (node, reply) in conn.on_every_master(&info).await? {
            let text: String = ::redis::from_owned_redis_value(reply).with_context(|| format!("INFO cpu of {node}"))?;
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("used_cpu_user:").or_else(|| line.strip_prefix("used_cpu_sys:")) {
                    total += v.trim().parse::<f64>().unwrap_or(0.0);
                }
            }
        }
        Ok(total)
    })
}

/// Bytes Redis holds per output event of the pipeline's output stream
/// (`MEMORY USAGE … SAMPLES 0`, over every event in it).
pub(super) fn output_bytes_per_event(url: &str, stream: &str, events: u64) -> anyhow::Result<f64> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut conn = crate::store::redis::connect_url(url).await?;
        let bytes: Option<u64> = ::redis::cmd("MEMORY").arg("USAGE").arg(stream).arg("SAMPLES").arg(0).query_async(&mut conn).await?;
        Ok(bytes.unwrap_or(0) as f64 / events.max(1) as f64)
    })
}
