//! pico-client-auth 0.7.1 as a consumer of a running server:
//! tests/interop/consumer.py under the interop venv validates an access
//! token through our JWKS ("VALID <sub> <role>"), then, on `go`, polls our
//! denylist and validates it again ("REJECTED <reason>" or "STILL-VALID").

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// The interop venv's python; without one, `None` once
/// [`super::missing_dependency`] has reported that `test` did not run.
pub fn python(test: &str) -> Option<PathBuf> {
    let python = super::interop_python();
    if python.is_none() {
        super::missing_dependency(test, "no Python venv with pico-client-auth 0.7.1");
    }
    python
}

/// A running tests/interop/consumer.py.
pub struct Consumer {
    child: Child,
    lines: Option<Lines<BufReader<ChildStdout>>>,
}

impl Consumer {
    /// Starts the consumer of the server at `base`: it validates `access`
    /// through `{base}/jwks`, polls `{base}/revoked-jtis` with `service`,
    /// accepts `algorithms` (`CONSUMER_ALGORITHMS`), with `env` added.
    pub fn start(
        python: &Path,
        base: &str,
        service: String,
        access: String,
        algorithms: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let mut child = Command::new(python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/interop/consumer.py"
            ))
            .args([
                format!("{base}/jwks"),
                format!("{base}/revoked-jtis"),
                service,
                access,
            ])
            .env("CONSUMER_ALGORITHMS", algorithms)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            lines: Some(lines),
        }
    }

    /// The next line the consumer prints (off the async threads).
    pub async fn line(&mut self) -> String {
        let mut lines = self.lines.take().expect("the consumer's stdout");
        let (line, lines) = tokio::task::spawn_blocking(move || (lines.next(), lines))
            .await
            .unwrap();
        self.lines = Some(lines);
        line.expect("consumer output").unwrap()
    }

    /// Lets the consumer go on to its second validation (and closes its stdin).
    pub fn go(&mut self) {
        self.child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }

    /// Waits for the consumer to exit and asserts that it succeeded.
    pub fn exits_ok(mut self) {
        assert!(self.child.wait().unwrap().success());
    }
}
