//! Prints Taktikal's documented example event, signed now with `$TAKTIKAL_KEY`, with a new `Id`
//! and `Guid`: a genuine event to send to a local ingester.
//!
//! ```sh
//! TAKTIKAL_KEY=dev-key cargo run -q -p countersign --example taktikal_event \
//!   | curl -sS --data-binary @- -H 'content-type: application/json' localhost:8080/webhooks/acme
//! ```

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use countersign::providers::taktikal;

const EXAMPLE: &str = include_str!("../tests/fixtures/taktikal/all_signed.json");

fn main() {
    let Ok(key) = std::env::var("TAKTIKAL_KEY") else {
        eprintln!("taktikal_event: set TAKTIKAL_KEY to the source's webhook signature key");
        std::process::exit(2);
    };
    let now = SystemTime::now();
    let nanos = now
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos();
    // Unique enough for a demo without pulling a UUID crate into the library.
    let id = format!("{nanos:032x}");
    let guid = format!(
        "{}-{}-{}-{}-{}",
        &id[0..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..32]
    );
    let mut event: serde_json::Value = serde_json::from_str(EXAMPLE).expect("fixture is JSON");
    event["Id"] = id.into();
    let event = taktikal::with_signature(event, key.as_bytes(), taktikal::ticks_of(now), &guid);
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &event).expect("stdout");
    out.write_all(b"\n").expect("stdout");
}
