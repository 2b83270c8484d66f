//! The real `doorbell dev` binary as a child process, for the tests that stop, restart and
//! load it.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `doorbell dev`; killed when dropped.
pub struct Dev {
    pub child: Child,
    pub port: u16,
}

impl Dev {
    /// Starts `doorbell dev --db db` with `extra` arguments on a free port (logs at `warn`
    /// appended to `log`, or dropped), and waits until it accepts connections.
    pub fn start(db: &Path, log: Option<&Path>, extra: &[&str]) -> Dev {
        Self::start_logging(db, log, extra, "warn")
    }

    /// [`Dev::start`] with `RUST_LOG` set to `level`.
    pub fn start_logging(db: &Path, log: Option<&Path>, extra: &[&str], level: &str) -> Dev {
        let port = free_port();
        let (stdout, stderr) = match log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                (Stdio::from(file.try_clone().unwrap()), Stdio::from(file))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_doorbell"))
            .args(["dev", "--listen", &format!("127.0.0.1:{port}"), "--db"])
            .arg(db)
            .args(extra)
            .env("RUST_LOG", level)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "doorbell dev did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Dev { child, port }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
