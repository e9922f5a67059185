//! The normalized model: what any provider's webhook says about a signing process.
//!
//! A provider's `parse` turns one raw body into [`SigningEvent`]s; the worker projects them into
//! processes, signees, activity and documents. Everything here is derived from the raw event
//! alone, so that projecting the same event again (a redelivery, a replay) converges to the same
//! rows: activity entries carry a stable [`ActivityEntry::key`], statuses a rank that never moves
//! backwards.

use chrono::{DateTime, Utc};

/// Where a signing process stands. Ordered by [`ProcessStatus::rank`]: a process never moves to a
/// lower rank, so events that arrive out of order cannot undo a later state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessStatus {
    /// Created, nobody has signed yet.
    Created,
    /// Some signees have signed.
    InProgress,
    /// Every signee has signed.
    AllSigned,
    /// Signed and every follow-up job of the provider has finished.
    Completed,
    Canceled,
    Expired,
}

impl ProcessStatus {
    /// Every state, in rank order.
    pub const ALL: [ProcessStatus; 6] = [
        ProcessStatus::Created,
        ProcessStatus::InProgress,
        ProcessStatus::AllSigned,
        ProcessStatus::Completed,
        ProcessStatus::Canceled,
        ProcessStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProcessStatus::Created => "created",
            ProcessStatus::InProgress => "in_progress",
            ProcessStatus::AllSigned => "all_signed",
            ProcessStatus::Completed => "completed",
            ProcessStatus::Canceled => "canceled",
            ProcessStatus::Expired => "expired",
        }
    }

    /// A final state a webhook claims — every signee signed, completed, canceled, expired —
    /// which the worker confirms with the provider's API where it can.
    pub fn is_final_claim(self) -> bool {
        matches!(
            self,
            ProcessStatus::AllSigned
                | ProcessStatus::Completed
                | ProcessStatus::Canceled
                | ProcessStatus::Expired
        )
    }

    /// Whether `api`, the state the provider's API reports, confirms this claimed state: all
    /// signed and completed confirm each other (the API may not tell them apart); canceled and
    /// expired only themselves.
    pub fn confirmed_by(self, api: ProcessStatus) -> bool {
        use ProcessStatus::{AllSigned, Completed};
        match self {
            AllSigned | Completed => matches!(api, AllSigned | Completed),
            claimed => claimed == api,
        }
    }

    /// Higher ranks win. The three final states share the top rank: the first one recorded stays.
    pub fn rank(self) -> i16 {
        match self {
            ProcessStatus::Created => 10,
            ProcessStatus::InProgress => 20,
            ProcessStatus::AllSigned => 30,
            ProcessStatus::Completed | ProcessStatus::Canceled | ProcessStatus::Expired => 40,
        }
    }
}

/// One thing a provider told about one signing process.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningEvent {
    /// The provider's key of the process (Taktikal `ProcessKey`, Universign transaction id, ...).
    pub process_key: String,
    /// The state this event puts the process in, if it says.
    pub status: Option<ProcessStatus>,
    /// When it happened, by the provider's clock, if the event says.
    pub occurred_at: Option<DateTime<Utc>>,
    pub flow_key: Option<String>,
    pub flow_name: Option<String>,
    pub company_key: Option<String>,
    pub signees: Vec<Signee>,
    pub documents: Vec<Document>,
    pub activity: Vec<ActivityEntry>,
    /// Provider-specific facts without a field of their own (Taktikal's `Meta`), as given.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A person asked to sign. Personal data: stored, served by the read API, never logged.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Signee {
    pub key: String,
    pub name: Option<String>,
    pub ssn: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub delivery_method: Option<String>,
    /// Once true, stays true.
    pub signed: bool,
    pub signed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// The signed document itself.
    Signed,
    /// A file sent along with its content.
    Attachment,
    /// A file the provider keeps and links to.
    Reference,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Signed => "signed",
            DocumentKind::Attachment => "attachment",
            DocumentKind::Reference => "reference",
        }
    }
}

/// A document of a process: its content when the event carries it, otherwise where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub kind: DocumentKind,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    /// Decoded bytes, when the event embeds them.
    pub content: Option<Vec<u8>>,
    pub url: Option<String>,
    /// The provider's id of the file, for references.
    pub reference_id: Option<String>,
    /// The size the provider announces, for references.
    pub declared_size: Option<i64>,
    /// Taktikal's AttachmentType (0 Unspecified, 10 EvidencePage, 20 PepPdf, ...).
    pub attachment_type: Option<i64>,
    pub signee_key: Option<String>,
    pub description: Option<String>,
    /// Where the provider's API serves the content, relative to the source's `api.base_url`
    /// (Legalesign: `/pdf/<uuid>/`): the worker downloads it before recording the event when the
    /// source has an API configured; otherwise the document stays a reference.
    pub fetch: Option<String>,
    /// Where the provider's API lists the documents (Universign: the transaction), relative to
    /// `api.base_url`: the provider turns the listing into documents with [`Document::fetch`]
    /// ([`crate::Provider::listed_documents`]), which replace this one.
    pub fetch_listing: Option<String>,
    /// Where the provider's API states the content's sha256, relative to `api.base_url`
    /// ([`crate::Provider::stated_digest`] reads it): a download that does not match is refused.
    pub digest_from: Option<String>,
    /// When the worker downloaded the content from [`Document::fetch`] (its provenance, with the
    /// path and the content's sha256).
    pub fetched_at: Option<DateTime<Utc>>,
}

impl Document {
    /// A document of `kind` with nothing else known yet.
    pub fn new(kind: DocumentKind) -> Self {
        Self {
            kind,
            file_name: None,
            content_type: None,
            content: None,
            url: None,
            reference_id: None,
            declared_size: None,
            attachment_type: None,
            signee_key: None,
            description: None,
            fetch: None,
            fetch_listing: None,
            digest_from: None,
            fetched_at: None,
        }
    }
}

/// One line of a process's activity log, in the shape of Taktikal's ActivityLog.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityEntry {
    /// Identifies the entry within its process, so that the same fact told twice (by a
    /// redelivery, or by two events) is one entry: `SigneeSigned:si42`, `Completed`.
    pub key: String,
    pub signee_key: Option<String>,
    /// `Created`, `SigneeAdded`, `SigneeSigned`, `Completed`, `Canceled`, `Expired`, ...
    pub status: String,
    pub description: String,
    pub file_name: Option<String>,
    /// When, if known; otherwise the event's time.
    pub created_at: Option<DateTime<Utc>>,
    pub created_by: String,
}

/// Why a body cannot be turned into events. Permanent: the same bytes will never parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

#[cfg(test)]
mod tests {
    use super::ProcessStatus::{
        self, AllSigned, Canceled, Completed, Created, Expired, InProgress,
    };

    #[test]
    fn a_claimed_final_state_is_confirmed_by_the_same_state_only() {
        let finals: Vec<ProcessStatus> = ProcessStatus::ALL
            .into_iter()
            .filter(|s| s.is_final_claim())
            .collect();
        assert_eq!(finals, [AllSigned, Completed, Canceled, Expired]);
        for claimed in ProcessStatus::ALL {
            for reported in ProcessStatus::ALL {
                let signed = |s: ProcessStatus| matches!(s, AllSigned | Completed);
                let expected = claimed == reported || (signed(claimed) && signed(reported));
                assert_eq!(
                    claimed.confirmed_by(reported),
                    expected,
                    "{claimed:?} by {reported:?}"
                );
            }
        }
        assert!(!Created.is_final_claim() && !InProgress.is_final_claim());
    }
}
