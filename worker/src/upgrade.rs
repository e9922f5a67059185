//! `countersign-worker upgrade dead-queue`: gives a parking lot declared by an earlier version the
//! arguments of this one ([`countersign::topology::DEAD_DELIVERY_LIMIT`]) without losing what it
//! holds.
//!
//! RabbitMQ does not change a queue's arguments in place, and a quorum queue cannot be deleted
//! "only if empty". So the parked messages are moved to `<prefix>.dead.upgrade` (declared like
//! the new parking lot), `<prefix>.dead` is deleted once it is seen empty and declared again, and
//! the messages are moved back. Every move publishes with a confirm before it acks, so a crash
//! duplicates one message at worst; running the command again finishes an interrupted upgrade.
//!
//! Nothing may park messages meanwhile: the command refuses to start while `<prefix>.persist` or
//! `<prefix>.dead` has consumers (workers, a shovel).

use countersign::amqp::{consumer_count, queue_length};
use countersign::topology::{QueueSpec, Topology, declare_queue, is_inequivalent};
use lapin::options::{ConfirmSelectOptions, QueueDeleteOptions};
use lapin::types::ShortString;
use lapin::{Channel, Connection};

use crate::replay::move_messages;

/// What the upgrade did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadQueueUpgrade {
    /// `<prefix>.dead` already had this version's arguments and no upgrade was interrupted.
    AlreadyCurrent,
    /// `<prefix>.dead` was declared again; `moved` parked messages went aside and came back.
    Upgraded { moved: u64 },
}

/// Runs the upgrade on `connection` (see the module documentation).
pub async fn upgrade_dead_queue(
    connection: &Connection,
    topology: &Topology,
) -> anyhow::Result<DeadQueueUpgrade> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions { nowait: false })
        .await?;
    for queue in [topology.persist_queue(), topology.dead_queue()] {
        let consumers = consumer_count(&channel, queue).await?;
        if consumers > 0 {
            anyhow::bail!(
                "{queue} has {consumers} consumer(s): stop the workers (and any shovel) first, so that nothing is parked while the parking lot is moved"
            );
        }
    }
    let holding = topology.dead_holding_spec();
    let interrupted = queue_exists(connection, &holding.name).await?;
    let dead = topology.dead_spec();
    let current = {
        let probe = connection.create_channel().await?;
        match declare_queue(&probe, &dead).await {
            Ok(()) => true,
            Err(error) if is_inequivalent(&error, "x-delivery-limit") => false,
            Err(error) => return Err(error.into()),
        }
    };
    if current && !interrupted {
        return Ok(DeadQueueUpgrade::AlreadyCurrent);
    }
    let mut moved = 0;
    if !current {
        declare_queue(&channel, &holding).await?;
        moved = move_all(&channel, &dead, &holding).await?;
        delete_empty(&channel, &dead).await?;
        declare_queue(&channel, &dead).await?;
    }
    let back = move_all(&channel, &holding, &dead).await?;
    delete_empty(&channel, &holding).await?;
    let _ = channel.close(200, "upgraded".into()).await;
    Ok(DeadQueueUpgrade::Upgraded {
        moved: moved.max(back),
    })
}

async fn move_all(channel: &Channel, from: &QueueSpec, to: &QueueSpec) -> anyhow::Result<u64> {
    let count = u64::from(queue_length(channel, &from.name).await?);
    let moved = move_messages(
        channel,
        &from.name,
        &to.name,
        count,
        &Clone::clone,
        &|_, _| {},
    )
    .await?;
    tracing::info!(from = %from.name, to = %to.name, moved, "parked messages moved");
    Ok(moved)
}

/// Deletes `queue` after checking that it is empty (quorum queues refuse `if-empty`).
async fn delete_empty(channel: &Channel, queue: &QueueSpec) -> anyhow::Result<()> {
    let left = queue_length(channel, &queue.name).await?;
    if left > 0 {
        anyhow::bail!(
            "{} still holds {left} message(s) after they were moved: something is writing to it; nothing was deleted, run the command again once it is stopped",
            queue.name
        );
    }
    let deleted = channel
        .queue_delete(
            ShortString::from(queue.name.as_str()),
            QueueDeleteOptions::default(),
        )
        .await?;
    if deleted > 0 {
        // Arrived between the check and the delete: nothing here can hold them back.
        tracing::error!(queue = %queue.name, deleted, "messages arrived while the queue was deleted");
        anyhow::bail!(
            "{deleted} message(s) arrived in {} while it was deleted; they are lost",
            queue.name
        );
    }
    Ok(())
}

/// Whether `queue` exists (a passive declaration, on a channel of its own: a missing queue
/// closes the channel it was asked on).
async fn queue_exists(connection: &Connection, queue: &str) -> Result<bool, lapin::Error> {
    let probe = connection.create_channel().await?;
    match queue_length(&probe, queue).await {
        Ok(_) => {
            let _ = probe.close(200, "looked".into()).await;
            Ok(true)
        }
        Err(error) if is_not_found(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

fn is_not_found(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp) if matches!(
            amqp.kind(),
            lapin::protocol::AMQPErrorKind::Soft(lapin::protocol::AMQPSoftError::NOTFOUND)
        )
    )
}
