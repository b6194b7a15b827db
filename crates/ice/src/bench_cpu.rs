//! Where a benchmark's CPU went: this process's CPU time and how busy the whole machine was over a measured
//! interval, from Linux's `/proc` (nothing is printed where it is absent).
//!
//! Throughput on a small machine swings ±10 % from run to run; CPU time per decision moves far less, and tells
//! whether a level was bound by the CPU (the machine near 100 % busy: only less work per decision helps) or by
//! waiting (idle cores: the store, the locks, the scheduler).

use std::time::Instant;

/// `USER_HZ`: the unit of the tick counts in `/proc/self/stat` and `/proc/stat`, fixed at 100 on Linux.
const TICKS_PER_SEC: f64 = 100.0;

/// CPU counters at the start of an interval.
pub struct CpuWindow {
    wall: Instant,
    process: Option<u64>,
    machine: Option<Ticks>,
}

/// CPU use over an interval.
pub struct CpuUse {
    /// Wall-clock seconds.
    pub wall: f64,
    /// Seconds of CPU this process used (user + system), all its threads.
    pub process: Option<f64>,
    /// The share of the machine's CPU time (all cores) that was not idle, 0 to 1.
    pub machine_busy: Option<f64>,
}

/// Busy and total ticks of all cores since boot.
#[derive(Clone, Copy)]
struct Ticks {
    busy: u64,
    total: u64,
}

impl CpuWindow {
    /// Starts an interval now.
    pub fn start() -> Self {
        Self { wall: Instant::now(), process: process_ticks(), machine: machine_ticks() }
    }

    /// What was used since [`CpuWindow::start`].
    pub fn finish(&self) -> CpuUse {
        let wall = self.wall.elapsed().as_secs_f64();
        let process = self.process.zip(process_ticks()).map(|(a, b)| b.saturating_sub(a) as f64 / TICKS_PER_SEC);
        let machine_busy = self.machine.zip(machine_ticks()).and_then(|(a, b)| {
            let total = b.total.saturating_sub(a.total);
            (total > 0).then(|| b.busy.saturating_sub(a.busy) as f64 / total as f64)
        });
        CpuUse { wall, process, machine_busy }
    }
}

impl CpuUse {
    /// One line for a benchmark's output, e.g. `cpu: this process 1.84 cores, 176 µs per decision; machine 93 %
    /// busy (2 cores)`; `None` where nothing was measured.
    pub fn describe(&self, decisions: u64) -> Option<String> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let mut parts = Vec::new();
        if let Some(cpu) = self.process.filter(|_| self.wall > 0.0) {
            let per = if decisions > 0 {
                format!(", {:.0} µs per decision", cpu * 1e6 / decisions as f64)
            } else {
                String::new()
            };
            parts.push(format!("this process {:.2} cores{per}", cpu / self.wall));
        }
        if let Some(busy) = self.machine_busy {
            parts.push(format!("machine {:.0} % busy ({cores} cores)", busy * 100.0));
        }
        (!parts.is_empty()).then(|| format!("cpu: {}", parts.join("; ")))
    }
}

fn process_ticks() -> Option<u64> {
    parse_process_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn machine_ticks() -> Option<Ticks> {
    parse_machine_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// utime + stime from `/proc/<pid>/stat`: fields 14 and 15, counted after the command name, which is in
/// parentheses and may itself hold spaces and parentheses (so the fields start after the last `)`).
fn parse_process_stat(text: &str) -> Option<u64> {
    let mut fields = text.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// The `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq steal …; idle and iowait are not busy.
/// (guest time is already counted in user.)
fn parse_machine_stat(text: &str) -> Option<Ticks> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|t| t.parse().ok()).collect::<Option<_>>()?;
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some(Ticks { busy: total.saturating_sub(idle), total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_is_read_after_a_command_name_holding_spaces_and_parentheses() {
        let stat = "4242 (ice (bench) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 731 269 0 0 20 0 67 0 123 456";
        assert_eq!(parse_process_stat(stat), Some(731 + 269));
        assert_eq!(parse_process_stat("4242 (ice) S 1 2"), None);
    }

    #[test]
    fn machine_busy_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n";
        let t = parse_machine_stat(stat).expect("parsed");
        assert_eq!((t.busy, t.total), (160, 1000));
        assert!(parse_machine_stat("intr 1 2 3").is_none());
    }

    #[test]
    fn a_window_on_this_machine_measures_the_work_done_in_it() {
        let window = CpuWindow::start();
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed().as_millis() < 120 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let used = window.finish();
        if let Some(cpu) = used.process {
            // Ticks are 10 ms: 120 ms of spinning shows as at least 50 ms however the ticks fall.
            assert!(cpu >= 0.05, "spinning 120 ms measured {cpu} s of CPU");
        }
        let line = used.describe(1000).unwrap_or_default();
        assert!(used.process.is_none() || line.contains("µs per decision"), "{line}");
    }
}
