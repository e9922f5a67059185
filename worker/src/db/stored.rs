//! Documents' contents: each written to the store under its sha256 (concurrently), and its
//! `stored_documents` row, before the projection names it.

use futures_util::future::try_join_all;

use super::record::Item;
use super::{Db, RecordError};
use crate::documents::DocumentStore;

impl Db {
    /// `ids[item][event][document]`: each content stored by its sha256, the contents
    /// written concurrently and their `stored_documents` rows in one statement.
    pub(super) async fn store_batch_documents(
        &self,
        items: &[Item<'_>],
        store: &dyn DocumentStore,
    ) -> Result<Vec<Vec<Vec<Option<String>>>>, RecordError> {
        let ids = try_join_all(items.iter().map(|item| async move {
            let mut per_event = Vec::with_capacity(item.events.len());
            for event in &item.events {
                let mut per_document = Vec::with_capacity(event.documents.len());
                for document in &event.documents {
                    let Some(content) = &document.content else {
                        per_document.push(None);
                        continue;
                    };
                    let sha256 = crate::documents::sha256_hex(content);
                    store
                        .put(&sha256, content)
                        .await
                        .map_err(|e| RecordError::DocumentStore(e.to_string()))?;
                    per_document.push(Some(sha256));
                }
                per_event.push(per_document);
            }
            Ok::<_, RecordError>(per_event)
        }))
        .await?;

        let mut rows: Vec<(&str, i64, &str)> = Vec::new();
        for (item, item_ids) in items.iter().zip(&ids) {
            for (event, event_ids) in item.events.iter().zip(item_ids) {
                for (document, id) in event.documents.iter().zip(event_ids) {
                    if let (Some(id), Some(content)) = (id, &document.content) {
                        let content_type = document
                            .content_type
                            .as_deref()
                            .unwrap_or("application/octet-stream");
                        rows.push((id, content.len() as i64, content_type));
                    }
                }
            }
        }
        if !rows.is_empty() {
            rows.sort_unstable_by_key(|r| r.0);
            rows.dedup_by_key(|r| r.0);
            let (sha256, size, content_type) = columns3(&rows);
            sqlx::query(
                "INSERT INTO stored_documents (sha256, size, content_type)
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::text[])
                 ON CONFLICT DO NOTHING",
            )
            .bind(sha256)
            .bind(size)
            .bind(content_type)
            .execute(self.pool())
            .await?;
        }
        Ok(ids)
    }
}

fn columns3<A: Copy, B: Copy, C: Copy>(rows: &[(A, B, C)]) -> (Vec<A>, Vec<B>, Vec<C>) {
    let mut a = Vec::with_capacity(rows.len());
    let mut b = Vec::with_capacity(rows.len());
    let mut c = Vec::with_capacity(rows.len());
    for &(x, y, z) in rows {
        a.push(x);
        b.push(y);
        c.push(z);
    }
    (a, b, c)
}
