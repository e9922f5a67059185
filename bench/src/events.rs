//! Genuine Taktikal events of a chosen size, signed as Taktikal signs them, cheap to mint.

use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use countersign_providers::taktikal;
use rand::RngCore as _;

const PROCESS_PLACEHOLDER: &str = "@@PROCESS@@";
const EXAMPLE: &str = include_str!("../../providers/tests/fixtures/taktikal/all_signed.json");

/// Mints events of about `size` bytes: the documented example with its `SignedDocument` replaced
/// by random bytes in base64, a new `Id`, a process of its own (as events spread over many
/// processes in real use — one process for all would serialize the worker on its row lock), and a
/// fresh signature (new Guid, current ticks).
pub struct EventFactory {
    key: Vec<u8>,
    /// `EventData`, serialized once, split where the process key goes.
    parts: Vec<String>,
}

impl EventFactory {
    pub fn new(key: &str, size: usize) -> Self {
        let example: serde_json::Value = serde_json::from_str(EXAMPLE).expect("fixture is JSON");
        let mut data = example["EventData"].clone();
        data["SignedDocument"] = "".into();
        data["ProcessKey"] = PROCESS_PLACEHOLDER.into();
        for signee in data["Signees"].as_array_mut().expect("signees") {
            signee["ProcessKey"] = PROCESS_PLACEHOLDER.into();
        }
        let skeleton = serde_json::to_string(&data).unwrap();
        // Id (32) + signature block (~200) + the rest of EventData.
        let overhead = skeleton.len() + 260;
        let base64_len = size.saturating_sub(overhead);
        let mut document = vec![0u8; base64_len / 4 * 3];
        rand::rng().fill_bytes(&mut document);
        data["SignedDocument"] = base64::engine::general_purpose::STANDARD
            .encode(&document)
            .into();
        let event_data = serde_json::to_string(&data).unwrap();
        let (head, rest) = event_data
            .split_once(PROCESS_PLACEHOLDER)
            .expect("placeholder");
        Self {
            key: key.as_bytes().to_vec(),
            parts: std::iter::once(head)
                .chain(rest.split(PROCESS_PLACEHOLDER))
                .map(str::to_owned)
                .collect(),
        }
    }

    /// A new signed event: (its `Id`, its body).
    pub fn mint(&self) -> (String, Bytes) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let guid = uuid::Uuid::new_v4().to_string();
        let ticks = taktikal::ticks_of(SystemTime::now());
        let signature = taktikal::sign(&self.key, ticks, &guid);
        let process_key = format!("sp{}", &id[..16]);
        let data = self.parts.join(&process_key);
        let body = format!(
            r#"{{"Id":"{id}","EventData":{data},"EventSignature":{{"TimeStamp":{ticks},"Guid":"{guid}","Signature":"{signature}","SignedData":"{ticks}{guid}"}}}}"#
        );
        (id, Bytes::from(body))
    }
}
