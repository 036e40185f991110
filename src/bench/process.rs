//! A `herald serve` child process on a fresh temporary database, with its
//! CPU time and peak memory read from `/proc`, so the bench measures Herald
//! alone and not the load generator or the receiver beside it.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct HeraldProcess {
    child: Child,
    pid: u32,
    pub base: String,
    pub token: String,
    db: PathBuf,
    _dir: tempfile::TempDir,
}

impl HeraldProcess {
    /// Starts Herald with its default, durable settings.
    pub async fn start() -> anyhow::Result<HeraldProcess> {
        Self::start_with(&[]).await
    }

    /// Starts Herald with its default settings but for `args` (which
    /// never touch durability).
    pub async fn start_with(args: &[String]) -> anyhow::Result<HeraldProcess> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("herald.db");
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", "--listen", "127.0.0.1:0", "--allow-private-targets"])
            .args(args)
            .arg("--database")
            .arg(format!("sqlite://{}", db.display()))
            .env("HERALD_LOG", std::env::var("BENCH_HERALD_LOG").unwrap_or_else(|_| "warn".into()))
            .env("HERALD_ADMIN_TOKEN", "hrld_bench_operator")
            // Seed 004's one-webhook deployment (from the environment, or a
            // `.env` the bench read or the child would read in its working
            // directory) would add a receiver to every scenario.
            .env_remove("WEBHOOK_URL")
            .env_remove("WEBHOOK_RETRY_ATTEMPTS")
            .env_remove("WEBHOOK_RETRY_DELAY")
            .env_remove("WEBHOOK_SECRET")
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting herald serve")?;
        let pid = child.id().context("herald has a pid")?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let mut base = None;
        while let Some(line) = lines.next_line().await? {
            if let Some((_, url)) = line.split_once("listening on ") {
                base = Some(url.trim().to_owned());
                break;
            }
        }
        let Some(base) = base else { bail!("herald exited before listening") };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let credentials = crate::credentials::load(&crate::credentials::path_for_database(&db))?;
        Ok(HeraldProcess { child, pid, base, token: credentials.token, db, _dir: dir })
    }

    /// User plus system CPU seconds the process has used.
    pub fn cpu_seconds(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else { return 0.0 };
        // Fields after the command name, which is in parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of stat, 12 and 13 here.
        (ticks(11) + ticks(12)) / clock_ticks_per_second()
    }

    /// The most resident memory the process has had, in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) else { return 0.0 };
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    }

    /// The database's size on disk (main file and WAL), in MB.
    pub fn database_mb(&self) -> f64 {
        let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let wal = PathBuf::from(format!("{}-wal", self.db.display()));
        (size(self.db.clone()) + size(wal)) as f64 / (1024.0 * 1024.0)
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}
