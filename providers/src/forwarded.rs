//! The bounds on what a verified request forwards into its message: the provider's signature
//! headers and the event type. Checked by [`crate::Sources::verify`] before anything is
//! published or spooled, so that every message fits the smallest frame a broker negotiates,
//! whatever a request carries (`countersign::message` builds the message).

/// The longest value of a request header forwarded into a message (a provider's signature
/// header, its delivery id). Real ones are under 300 bytes (BoldSign with two rolled secrets).
pub const MAX_FORWARDED_VALUE: usize = 1024;
/// All forwarded request headers of one message together, names and values.
pub const MAX_FORWARDED_BYTES: usize = 8 * 1024;
/// The longest event type a message carries (`x-event-type`; real ones are under 64 bytes).
pub const MAX_EVENT_TYPE: usize = 255;

/// Why a verified request's headers cannot travel in a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Oversized {
    #[error("header {name} is {len} bytes; at most {MAX_FORWARDED_VALUE} are accepted")]
    Value { name: &'static str, len: usize },
    #[error(
        "the signature headers are {len} bytes together; at most {MAX_FORWARDED_BYTES} are accepted"
    )]
    Total { len: usize },
    #[error("the event type is {len} bytes; at most {MAX_EVENT_TYPE} are accepted")]
    EventType { len: usize },
}

/// `Ok` if the headers a message would forward, and its event type, are within the bounds
/// above — so that every message fits the smallest frame a broker negotiates by construction,
/// whatever a request carries.
pub fn check_forwarded(
    headers: &[(&'static str, String)],
    event_type: &str,
) -> Result<(), Oversized> {
    if event_type.len() > MAX_EVENT_TYPE {
        return Err(Oversized::EventType {
            len: event_type.len(),
        });
    }
    let mut total = 0;
    for (name, value) in headers {
        if value.len() > MAX_FORWARDED_VALUE {
            return Err(Oversized::Value {
                name,
                len: value.len(),
            });
        }
        total += name.len() + value.len();
    }
    if total > MAX_FORWARDED_BYTES {
        return Err(Oversized::Total { len: total });
    }
    Ok(())
}
