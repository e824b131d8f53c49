//! The C core's log lines reach the `log` crate (target `grpc_core`).

use std::sync::Mutex;

use grpcore::{Environment, ServerBuilder};

static LINES: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        if record.target() == "grpc_core" {
            LINES.lock().unwrap().push((record.level(), record.args().to_string()));
        }
    }
    fn flush(&self) {}
}

#[test]
fn core_errors_are_logged_through_the_log_crate() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    let env = Environment::new(1);
    // The core logs why it could not bind.
    let err = ServerBuilder::new(&env).bind("256.256.256.256:0").build().unwrap_err();
    assert!(err.to_string().contains("failed to listen"), "{err}");
    let lines = LINES.lock().unwrap();
    assert!(
        lines.iter().any(|(level, line)| *level == log::Level::Error && line.contains("chttp2_server") && line.contains("not known")),
        "no core error line about the failed bind among {lines:#?}"
    );
}
