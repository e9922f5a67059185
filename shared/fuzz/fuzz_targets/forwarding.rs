//! The header-forwarding path alone: any headers and event type a verifier could hand over
//! (names from the providers' own, values from the input), through the bounds and into the
//! message. Whatever passes the bounds must make a header frame within `MAX_HEADER_FRAME` —
//! a message the broker could refuse would stop the spool behind it.
#![no_main]

use std::time::SystemTime;

use countersign::message::{self, Envelope, MAX_HEADER_FRAME, Receipt};
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "x-pandadoc-signature",
    "x-pandadoc-webhook-event-id",
    "x-docusign-signature-1",
    "x-docusign-signature-2",
    "x-boldsign-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-documenso-delivery-id",
    "x-docuseal-signature",
    "x-zs-webhook-signature",
    "x-yousign-signature-256",
];

fuzz_target!(|data: &[u8]| {
    // Parts separated by NUL: event type, event id, then (name selector byte + value) each.
    let mut parts = data.split(|&b| b == 0);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let event_type = text(parts.next().unwrap_or_default());
    let event_id = text(parts.next().unwrap_or_default());
    let headers: Vec<(&'static str, String)> = parts
        .filter_map(|part| {
            let (&selector, value) = part.split_first()?;
            Some((NAMES[usize::from(selector) % NAMES.len()], text(value)))
        })
        .collect();
    if message::check_forwarded(&headers, &event_type).is_err() {
        return;
    }
    let outbound = message::message(
        &Envelope {
            provider: "pandadoc",
            source: "pd",
            event_id: &event_id,
            event_type: &event_type,
            key_label: "env:PD_KEY",
            headers: &headers,
            app_id: "countersign-ingester",
        },
        &Receipt {
            request_id: "fuzz-request",
            received_at: SystemTime::now(),
            content_type: Some("application/json"),
        },
    );
    let len = countersign::amqp::header_frame_len(&outbound.properties);
    assert!(
        len <= MAX_HEADER_FRAME,
        "{len}-byte header frame passed the bounds"
    );
});
