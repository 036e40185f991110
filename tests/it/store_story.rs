//! The store story: every verb of `trait Store` and its edge cases, told
//! once and run against both backends (SQLite always; PostgreSQL when
//! `HERALD_TEST_DATABASE_URL` names one, else that half says it skipped).
//! Then what only a shared database does: two nodes claiming at once never
//! get the same delivery, a lease that runs out passes to the other node,
//! and a record by a node that lost its lease is refused.

use std::sync::Arc;

use herald::model::{
    Attempt, AttemptRecord, DeliveryFilter, DeliveryKey, DeliveryStatus, NewEvent, NextStep, NodeId, Principal,
    Timestamp, Webhook,
};
use herald::signing::token_hash;
use herald::store::{ClaimWant, HandOver, Lease, PgStore, SqliteStore, Store, StoreError};

use crate::support::test_database_url;

const NOW: Timestamp = Timestamp(1_800_000_000_000);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn lease(node: &str, until: Timestamp) -> Lease {
    Lease { node: NodeId(node.into()), until }
}

fn event(id: &str, event_type: &str, target: Option<&str>) -> NewEvent {
    NewEvent {
        id: Some(id.into()),
        event_type: event_type.into(),
        payload: format!("{{\"id\":\"{id}\"}}"),
        webhook_id: target.map(Into::into),
        timestamp: None,
    }
}

fn webhook(id: &str, account: &str, types: Option<&[&str]>) -> Webhook {
    Webhook {
        id: id.into(),
        event_types: types.map(|t| t.iter().map(|s| s.to_string()).collect()),
        ..Webhook::new(account, "http://127.0.0.1:9/hook", Default::default(), SECRET.into(), NOW)
    }
}

fn record(account: &str, delivery_id: &str, number: u32, status: u16, next: NextStep) -> AttemptRecord {
    AttemptRecord {
        delivery_id: delivery_id.into(),
        account_id: account.into(),
        number,
        attempt: Attempt {
            started_at: NOW,
            duration_ms: 10 * u64::from(number),
            status_code: Some(status),
            response_body: Some("ok".into()),
            error_class: None,
            error_message: None,
        },
        next,
    }
}

fn want(webhook_id: &str, limit: usize) -> ClaimWant {
    ClaimWant { webhook_id: webhook_id.into(), limit }
}

/// A fresh PostgreSQL store in a schema of its own, if the suite has a
/// PostgreSQL database; `name` keeps schemas of one test apart.
async fn postgres(name: &str) -> Option<String> {
    let base = test_database_url()?;
    let separator = if base.contains('?') { '&' } else { '?' };
    let unique = ulid::Ulid::new().to_string().to_lowercase();
    Some(format!("{base}{separator}schema=herald_story_{name}_{unique}&pool_size=4"))
}

#[tokio::test]
async fn the_store_story_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    story(Arc::new(SqliteStore::open(&dir.path().join("herald.db")).unwrap())).await;
}

#[tokio::test]
async fn the_store_story_on_postgres() {
    let Some(url) = postgres("story").await else {
        eprintln!(
            "skipped: HERALD_TEST_DATABASE_URL is not set, so the postgresql half of the store story did not run"
        );
        return;
    };
    story(Arc::new(PgStore::open(&url, Default::default()).await.unwrap())).await;
}

async fn story(store: Arc<dyn Store>) {
    // Bootstrap: an operator token and a default account, once.
    let first = store.bootstrap(Some("op-token".into()), NOW).await.unwrap();
    assert_eq!(first.generated_operator_token, None);
    let (account, token) = first.default_account.clone().expect("an empty database gets a default account");
    assert_eq!(first.first_account_id, account.id);
    let again = store.bootstrap(Some("op-token".into()), NOW).await.unwrap();
    assert!(again.default_account.is_none());
    assert_eq!(again.first_account_id, account.id);
    let a = account.id.clone();

    // Tokens.
    assert_eq!(store.authenticate(&token_hash("op-token")).await.unwrap(), Some(Principal::Operator));
    assert_eq!(store.authenticate(&token_hash(&token)).await.unwrap(), Some(Principal::Account(a.clone())));
    assert_eq!(store.authenticate(&token_hash("nobody")).await.unwrap(), None);
    let other = store.create_account("other", &token_hash("other-token"), NOW).await.unwrap();
    store.create_viber_bot_token(&other.id, &token_hash("bot-token"), NOW).await.unwrap();
    assert_eq!(
        store.authenticate(&token_hash("bot-token")).await.unwrap(),
        Some(Principal::ViberBot(other.id.clone()))
    );
    assert!(matches!(
        store.create_viber_bot_token("acc_nope", &token_hash("bot-2"), NOW).await,
        Err(StoreError::NotFound(_))
    ));

    // Account settings.
    store.set_disable_after(&a, 600).await.unwrap();
    let read = store.get_account(&a).await.unwrap().unwrap();
    assert_eq!((read.name.as_str(), read.disable_after_seconds, read.strict_event_types), ("default", 600, false));
    assert!(store.get_account("acc_nope").await.unwrap().is_none());

    // Webhooks, and another account's ids are not found.
    store.create_webhook(webhook("wh_a1", &a, None)).await.unwrap();
    store.create_webhook(webhook("wh_a2", &a, Some(&["a.*"]))).await.unwrap();
    store.create_webhook(webhook("wh_o1", &other.id, None)).await.unwrap();
    assert!(store.create_webhook(webhook("wh_a1", &a, None)).await.is_err(), "an id is taken once");
    let listed: Vec<String> = store.list_webhooks(&a).await.unwrap().into_iter().map(|w| w.id).collect();
    assert_eq!(listed, ["wh_a1", "wh_a2"]);
    assert_eq!(store.get_webhook(&a, "wh_a2").await.unwrap().unwrap().event_types, Some(vec!["a.*".to_owned()]));
    assert!(store.get_webhook(&other.id, "wh_a1").await.unwrap().is_none());
    let mut changed = store.get_webhook(&a, "wh_a1").await.unwrap().unwrap();
    changed.description = "changed".into();
    changed.updated_at = Timestamp(NOW.0 + 1);
    assert!(matches!(store.update_webhook(changed.clone(), Timestamp(NOW.0 - 5)).await, Err(StoreError::Conflict(_))));
    store.update_webhook(changed.clone(), NOW).await.unwrap();
    assert_eq!(store.get_webhook(&a, "wh_a1").await.unwrap().unwrap().description, "changed");
    let mut stolen = changed.clone();
    stolen.account_id = other.id.clone();
    assert!(matches!(store.update_webhook(stolen, Timestamp(NOW.0 + 1)).await, Err(StoreError::NotFound(_))));

    // Strict accounts refuse types outside the catalogue, whole batches.
    store.set_strict_event_types(&a, true).await.unwrap();
    let refused =
        store.ingest(&a, vec![event("s1", "no.such.type", None)], NOW, HandOver::default(), &lease("n1", NOW)).await;
    assert!(matches!(refused, Err(StoreError::Invalid(m)) if m.contains("events[0].type")));
    store.set_strict_event_types(&a, false).await.unwrap();
    let elsewhere = vec![event("x1", "a.x", None), event("x2", "a.x", Some("wh_o1"))];
    let refused = store.ingest(&a, elsewhere, NOW, HandOver::default(), &lease("n1", NOW)).await;
    assert!(matches!(refused, Err(StoreError::NotFound(m)) if m.contains("events[1].webhook_id")));
    assert!(store.get_event(&a, "x1").await.unwrap().is_none(), "a refused batch stores nothing");

    // Ingest: fan-out, idempotency (within a batch and across calls), hand-over.
    let node = lease("n1", Timestamp(NOW.0 + 300_000));
    let mut room = HandOver::default();
    room.per_webhook.insert("wh_a1".into(), 1);
    room.per_webhook.insert("wh_a2".into(), 0);
    let batch = vec![event("e1", "a.x", None), event("e2", "b", None), event("e1", "a.x", None)];
    let ingested = store.ingest(&a, batch, NOW, room, &node).await.unwrap();
    let outcomes: Vec<(&str, u32, bool)> =
        ingested.outcomes.iter().map(|o| (o.id.as_str(), o.deliveries, o.duplicate)).collect();
    assert_eq!(outcomes, [("e1", 2, false), ("e2", 1, false), ("e1", 2, true)]);
    assert_eq!(ingested.handed.len(), 1);
    let handed = &ingested.handed[0];
    assert_eq!((handed.webhook.id.as_str(), handed.event_id.as_str(), handed.n_attempts), ("wh_a1", "e1", 0));
    assert_eq!(ingested.unused.per_webhook.get("wh_a1"), Some(&0));
    let again = store.ingest(&a, vec![event("e1", "a.x", None)], NOW, HandOver::default(), &node).await.unwrap();
    assert_eq!((again.outcomes[0].deliveries, again.outcomes[0].duplicate), (2, true));
    let read = store.get_event(&a, "e1").await.unwrap().unwrap();
    assert_eq!((read.event_type.as_str(), read.payload.get()), ("a.x", "{\"id\":\"e1\"}"));
    assert!(store.get_event(&other.id, "e1").await.unwrap().is_none());

    // Claims: what is due and not held, leased to the claimer.
    let claimed = store.claim_due(NOW, &node, vec![want("wh_a1", 10), want("wh_a2", 10)]).await.unwrap();
    let by_webhook: Vec<(&str, Vec<&str>, Option<Timestamp>)> = claimed
        .iter()
        .map(|b| (b.webhook_id.as_str(), b.deliveries.iter().map(|d| d.event_id.as_str()).collect(), b.next_due))
        .collect();
    assert_eq!(by_webhook, [("wh_a1", vec!["e2"], None), ("wh_a2", vec!["e1"], None)]);
    let (a1_e2, a2_e1) = (claimed[0].deliveries[0].delivery_id.clone(), claimed[1].deliveries[0].delivery_id.clone());
    let again = store.claim_due(NOW, &node, vec![want("wh_a1", 10)]).await.unwrap();
    assert!(again[0].deliveries.is_empty(), "nothing held is claimed twice");

    // Records: success, a retry later, a failure.
    let records = vec![
        record(&a, &a1_e2, 1, 200, NextStep::Success),
        record(&a, &a2_e1, 1, 500, NextStep::RetryAt(Timestamp(NOW.0 + 1000))),
        record(&a, &handed.delivery_id, 1, 410, NextStep::Failed),
    ];
    let lost = store.record_attempts(&node.node, Arc::new(records), Vec::new(), NOW).await.unwrap();
    assert!(lost.is_empty());
    let (delivery, attempts) = store.get_delivery(&a, &a2_e1).await.unwrap().unwrap();
    assert_eq!(
        (delivery.status, delivery.n_attempts, delivery.last_status_code),
        (DeliveryStatus::Retrying, 1, Some(500))
    );
    assert_eq!(delivery.next_attempt_at, Some(Timestamp(NOW.0 + 1000)));
    assert_eq!(attempts.len(), 1);
    assert!(store.get_delivery(&other.id, &a2_e1).await.unwrap().is_none());

    // What is due, and when.
    assert_eq!(store.due_webhooks(NOW).await.unwrap(), [("wh_a2".to_owned(), Timestamp(NOW.0 + 1000))]);
    let early = store.claim_due(NOW, &node, vec![want("wh_a2", 10)]).await.unwrap();
    assert!(early[0].deliveries.is_empty());
    assert_eq!(early[0].next_due, Some(Timestamp(NOW.0 + 1000)));
    let later = Timestamp(NOW.0 + 1000);
    let retried = store.claim_due(later, &node, vec![want("wh_a2", 10)]).await.unwrap();
    assert_eq!(retried[0].deliveries.len(), 1);
    assert_eq!(retried[0].deliveries[0].n_attempts, 1);
    let second = vec![record(&a, &a2_e1, 2, 503, NextStep::Failed)];
    store.record_attempts(&node.node, Arc::new(second), Vec::new(), later).await.unwrap();
    let (delivery, attempts) = store.get_delivery(&a, &a2_e1).await.unwrap().unwrap();
    assert_eq!((delivery.status, delivery.n_attempts), (DeliveryStatus::Failed, 2));
    let statuses: Vec<Option<u16>> = attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(statuses, [Some(500), Some(503)]);

    // The log: filters, pages, stats.
    let page = |filter: DeliveryFilter| {
        let store = store.clone();
        let a = a.clone();
        async move { store.list_deliveries(&a, filter).await.unwrap() }
    };
    let all = page(DeliveryFilter { limit: 10, ..Default::default() }).await;
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let failed = page(DeliveryFilter { status: Some(DeliveryStatus::Failed), limit: 10, ..Default::default() }).await;
    assert_eq!(failed.len(), 2);
    let first_page = page(DeliveryFilter { limit: 2, ..Default::default() }).await;
    let rest = page(DeliveryFilter { limit: 2, before_id: Some(first_page[1].id.clone()), ..Default::default() }).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, all[2].id);
    let of_a2 = page(DeliveryFilter { webhook_id: Some("wh_a2".into()), limit: 10, ..Default::default() }).await;
    assert_eq!(of_a2.len(), 1);
    let before = page(DeliveryFilter { until: Some(NOW), limit: 10, ..Default::default() }).await;
    assert!(before.is_empty(), "ids are time: nothing was made before NOW");
    let stats = store.delivery_stats(&a, NOW, Timestamp(NOW.0 + 1), None).await.unwrap();
    let mut durations: Vec<u64> = stats.iter().flat_map(|s| s.durations_ms.clone()).collect();
    durations.sort();
    assert_eq!(durations, [10, 10, 10, 20]);

    // Manual retries.
    let retry = store.retry_delivery(&a, &a1_e2, later).await.unwrap();
    assert_eq!((retry.status, retry.next_attempt_at), (DeliveryStatus::Pending, Some(later)));
    assert!(matches!(store.retry_delivery(&a, &a1_e2, later).await, Err(StoreError::Conflict(_))));
    assert!(matches!(store.retry_delivery(&a, "dlv_nope", later).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.retry_delivery(&other.id, &a2_e1, later).await, Err(StoreError::NotFound(_))));

    // Failing since, noted once; recovered.
    assert_eq!(store.note_failing(&a, "wh_a1", NOW).await.unwrap(), NOW);
    assert_eq!(store.note_failing(&a, "wh_a1", later).await.unwrap(), NOW, "the earlier time stays");
    store.note_recovered(&a, "wh_a1").await.unwrap();
    assert_eq!(store.note_failing(&a, "wh_a1", later).await.unwrap(), later);

    // Disabled and deleted webhooks: no new deliveries, the waiting ones fail.
    assert!(store.disable_webhook(&a, "wh_a2", "gone", later).await.unwrap());
    assert!(!store.disable_webhook(&a, "wh_a2", "gone", later).await.unwrap());
    let only_a1 = store.ingest(&a, vec![event("e3", "a.y", None)], later, HandOver::default(), &node).await.unwrap();
    assert_eq!(only_a1.outcomes[0].deliveries, 1);
    store.delete_webhook(&a, "wh_a1", later).await.unwrap();
    assert!(matches!(store.delete_webhook(&a, "wh_a1", later).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.delete_webhook(&other.id, "wh_a2", later).await, Err(StoreError::NotFound(_))));
    let refused = store.claim_due(later, &node, vec![want("wh_a1", 10)]).await.unwrap();
    assert!(refused[0].deliveries.is_empty());
    let (failed, _) = store.get_delivery(&a, &a1_e2).await.unwrap().unwrap();
    assert_eq!((failed.status, failed.last_error.as_deref()), (DeliveryStatus::Failed, Some("webhook deleted")));

    // Handing leases back: due again at once.
    store.create_webhook(webhook("wh_a3", &a, Some(&["c"]))).await.unwrap();
    store.ingest(&a, vec![event("e4", "c", None)], later, HandOver::default(), &node).await.unwrap();
    let taken = store.claim_due(later, &node, vec![want("wh_a3", 10)]).await.unwrap();
    assert_eq!(taken[0].deliveries.len(), 1);
    // (SQLite counts only the leases it wrote, which claims do not: one
    // node's claims are held in memory. The count is the backends' own.)
    store.release_leases(&node.node, later).await.unwrap();
    let back = store.claim_due(later, &node, vec![want("wh_a3", 10)]).await.unwrap();
    assert_eq!(back[0].deliveries.len(), 1, "a handed-back delivery is claimed again");
    // Put off unsent: it waits again, its attempts intact.
    let key = DeliveryKey { account_id: a.clone(), delivery_id: back[0].deliveries[0].delivery_id.clone() };
    store.record_attempts(&node.node, Arc::default(), vec![key.clone()], later).await.unwrap();
    let (put_off, attempts) = store.get_delivery(&a, &key.delivery_id).await.unwrap().unwrap();
    assert_eq!((put_off.status, put_off.next_attempt_at, attempts.len()), (DeliveryStatus::Pending, Some(later), 0));
}

#[tokio::test]
async fn two_nodes_on_postgres_never_get_one_delivery_twice_and_a_lapsed_lease_passes_on() {
    let Some(url) = postgres("nodes").await else {
        eprintln!("skipped: HERALD_TEST_DATABASE_URL is not set, so the two-node postgresql story did not run");
        return;
    };
    let one: Arc<dyn Store> = Arc::new(PgStore::open(&url, Default::default()).await.unwrap());
    let two: Arc<dyn Store> = Arc::new(PgStore::open(&url, Default::default()).await.unwrap());
    let a = one.bootstrap(None, NOW).await.unwrap().default_account.unwrap().0.id;
    assert!(two.bootstrap(None, NOW).await.unwrap().default_account.is_none(), "one default account for both");
    one.create_webhook(webhook("wh_shared", &a, None)).await.unwrap();
    let events: Vec<NewEvent> = (0..300).map(|i| event(&format!("e{i}"), "t", None)).collect();
    one.ingest(&a, events, NOW, HandOver::default(), &lease("n1", NOW)).await.unwrap();

    // Both claim at once, in small rounds, until nothing is left.
    let claim_all = |store: Arc<dyn Store>, node: &'static str| async move {
        let mut got = Vec::new();
        loop {
            let batch = store
                .claim_due(NOW, &lease(node, Timestamp(NOW.0 + 60_000)), vec![want("wh_shared", 7)])
                .await
                .unwrap()
                .pop()
                .unwrap();
            if batch.deliveries.is_empty() && batch.next_due.is_none() {
                return got;
            }
            got.extend(batch.deliveries.into_iter().map(|d| d.delivery_id));
            tokio::task::yield_now().await;
        }
    };
    let (got_one, got_two) =
        tokio::join!(tokio::spawn(claim_all(one.clone(), "n1")), tokio::spawn(claim_all(two.clone(), "n2")));
    let (got_one, got_two) = (got_one.unwrap(), got_two.unwrap());
    let mut all: Vec<&String> = got_one.iter().chain(&got_two).collect();
    assert_eq!(all.len(), 300, "{} + {}", got_one.len(), got_two.len());
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 300, "a delivery was given to both nodes");

    // Node one's leases run out at NOW + 60 s: node two takes one over.
    let stale = got_one.first().expect("node one claimed some").clone();
    let key = DeliveryKey { account_id: a.clone(), delivery_id: stale.clone() };
    let before = two.claim_due(Timestamp(NOW.0 + 59_999), &lease("n2", NOW), vec![want("wh_shared", 1000)]).await;
    assert!(before.unwrap()[0].deliveries.iter().all(|d| d.delivery_id != stale), "a live lease holds");
    let after = Timestamp(NOW.0 + 60_001);
    let taken = two.claim_due(after, &lease("n2", Timestamp(after.0 + 60_000)), vec![want("wh_shared", 1000)]).await;
    let taken: Vec<String> = taken.unwrap()[0].deliveries.iter().map(|d| d.delivery_id.clone()).collect();
    assert!(taken.contains(&stale), "a lapsed lease passes to the node that claims");

    // Node one wakes up: it can neither renew nor record over node two.
    let n1 = lease("n1", Timestamp(after.0 + 60_000));
    assert_eq!(one.renew_leases(&n1, vec![key.clone()]).await.unwrap(), std::slice::from_ref(&key));
    let late = vec![record(&a, &stale, 1, 500, NextStep::RetryAt(Timestamp(after.0 + 1000)))];
    assert_eq!(
        one.record_attempts(&n1.node, Arc::new(late), Vec::new(), after).await.unwrap(),
        std::slice::from_ref(&key)
    );
    let ok = vec![record(&a, &stale, 1, 200, NextStep::Success)];
    let n2 = NodeId("n2".into());
    assert!(two.record_attempts(&n2, Arc::new(ok), Vec::new(), after).await.unwrap().is_empty());
    let (delivery, attempts) = one.get_delivery(&a, &stale).await.unwrap().unwrap();
    assert_eq!((delivery.status, delivery.last_status_code, attempts.len()), (DeliveryStatus::Success, Some(200), 1));

    // Node two renews what it holds; a graceful stop hands it all back.
    let held: Vec<DeliveryKey> = taken
        .iter()
        .filter(|id| **id != stale)
        .map(|id| DeliveryKey { account_id: a.clone(), delivery_id: id.clone() })
        .collect();
    assert!(two.renew_leases(&lease("n2", Timestamp(after.0 + 120_000)), held.clone()).await.unwrap().is_empty());
    assert_eq!(two.release_leases(&n2, after).await.unwrap() as usize, held.len());
    let due = one.due_webhooks(after).await.unwrap();
    assert_eq!(due, [("wh_shared".to_owned(), NOW)], "handed back: due for any node at once");
    assert_eq!(taken.len(), 300, "every lease had lapsed: all went to the claim");
    let n1_left = one.release_leases(&NodeId("n1".into()), after).await.unwrap();
    assert_eq!(n1_left, 0, "node one's leases all lapsed and went to node two");
}

#[tokio::test]
async fn postgres_nodes_hear_of_due_work_and_share_breakers_and_heartbeats() {
    let Some(url) = postgres("notices").await else {
        eprintln!("skipped: HERALD_TEST_DATABASE_URL is not set, so the postgresql notices story did not run");
        return;
    };
    let one: Arc<dyn Store> = Arc::new(PgStore::open(&url, Default::default()).await.unwrap());
    let two: Arc<dyn Store> = Arc::new(PgStore::open(&url, Default::default()).await.unwrap());
    assert!(one.is_shared());
    let mut notices = two.due_notices().expect("a shared store has a due-notice feed");
    assert!(two.due_notices().is_none(), "the feed is taken once");
    let a = one.bootstrap(None, NOW).await.unwrap().default_account.unwrap().0.id;
    one.create_webhook(webhook("wh_n", &a, None)).await.unwrap();
    // The listener reports what is due when it (re)connects, then notices.
    let ingested = one.ingest(&a, vec![event("n1", "t", None)], NOW, HandOver::default(), &lease("n1", NOW)).await;
    assert_eq!(ingested.unwrap().outcomes[0].deliveries, 1);
    let notice = tokio::time::timeout(crate::support::PATIENCE, notices.recv()).await.unwrap().unwrap();
    assert_eq!((notice.webhook_id.as_str(), notice.at), ("wh_n", NOW));

    // Heartbeats: each node sees both, in one order.
    let (n1, n2) = (NodeId("node_1".into()), NodeId("node_2".into()));
    let until = Timestamp(NOW.0 + 30_000);
    one.heartbeat(&n1, NOW, until).await.unwrap();
    let view = two.heartbeat(&n2, NOW, until).await.unwrap();
    assert_eq!((view.nodes, view.rank), (2, 1));
    let alone = two.heartbeat(&n2, Timestamp(until.0 + 1), Timestamp(until.0 + 30_000)).await.unwrap();
    assert_eq!((alone.nodes, alone.rank), (1, 0), "a node whose heartbeat lapsed is not counted");

    // A breaker opened on one node is in every node's claims.
    let open_until = Timestamp(NOW.0 + 5_000);
    one.set_circuit("wh_n", Some(open_until)).await.unwrap();
    let batch = two.claim_due(NOW, &lease("node_2", until), vec![want("wh_n", 0)]).await.unwrap();
    assert_eq!(batch[0].circuit_open_until, Some(open_until));
    one.set_circuit("wh_n", None).await.unwrap();
    let batch = two.claim_due(NOW, &lease("node_2", until), vec![want("wh_n", 0)]).await.unwrap();
    assert_eq!(batch[0].circuit_open_until, None);
}

#[tokio::test]
async fn postgres_keeps_webhook_secrets_sealed_with_a_key_and_refuses_to_start_without_it() {
    let Some(base) = test_database_url() else {
        eprintln!("skipped: HERALD_TEST_DATABASE_URL is not set, so the postgresql secrets story did not run");
        return;
    };
    let schema = format!("herald_story_sealed_{}", ulid::Ulid::new().to_string().to_lowercase());
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}schema={schema}");
    // Written in the clear first, then sealed by the next start with a key.
    let plain = PgStore::open(&url, Default::default()).await.unwrap();
    let a = plain.bootstrap(None, NOW).await.unwrap().default_account.unwrap().0.id;
    plain.create_webhook(webhook("wh_s", &a, None)).await.unwrap();
    drop(plain);
    let key = herald::sealing::SecretKey::from_bytes(&[7; 32]).unwrap();
    let sealed = PgStore::open(&url, herald::sealing::AtRest::new(Some(key))).await.unwrap();
    assert_eq!(sealed.get_webhook(&a, "wh_s").await.unwrap().unwrap().secret, SECRET, "opened on every read");
    sealed.create_webhook(webhook("wh_t", &a, None)).await.unwrap();
    let mut config: tokio_postgres::Config = base.parse().unwrap();
    config.options(format!("-c search_path={schema}"));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    for row in client.query("SELECT id, secret FROM webhooks", &[]).await.unwrap() {
        let (id, stored): (String, String) = (row.get(0), row.get(1));
        assert!(herald::sealing::is_sealed(&stored) && !stored.contains(SECRET), "{id} holds {stored}");
    }
    let Err(refused) = PgStore::open(&url, Default::default()).await else {
        panic!("a database of sealed secrets started without its key");
    };
    assert!(format!("{refused:#}").contains("no secret key is set"), "{refused:#}");
}

#[tokio::test]
async fn postgres_connections_lost_are_unavailable_and_the_pool_makes_new_ones() {
    let Some(base) = test_database_url() else {
        eprintln!("skipped: HERALD_TEST_DATABASE_URL is not set, so the postgresql reconnection story did not run");
        return;
    };
    let name = format!("herald_story_{}", ulid::Ulid::new().to_string().to_lowercase());
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}schema={name}&application_name={name}&pool_size=2");
    let store = PgStore::open(&url, Default::default()).await.unwrap();
    let a = store.bootstrap(None, NOW).await.unwrap().default_account.unwrap().0.id;
    // An administrator (or a restart) ends every connection the pool holds.
    let config: tokio_postgres::Config = base.parse().unwrap();
    let (admin, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let ended = admin
        .query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", &[&name])
        .await
        .unwrap();
    assert!(!ended.is_empty(), "the store's connections were found");
    // A call may meet a dead connection (`Unavailable`, a 503 for ingest),
    // never an internal error; soon after, the pool has new ones.
    let mut recovered = false;
    for _ in 0..4 {
        match store.get_account(&a).await {
            Ok(found) => {
                assert_eq!(found.unwrap().id, a);
                recovered = true;
                break;
            }
            Err(StoreError::Unavailable(why)) => assert!(why.starts_with("postgresql"), "{why}"),
            Err(other) => panic!("a lost connection is unavailable, not {other:?}"),
        }
    }
    assert!(recovered, "the pool did not make new connections");
    let refused = PgStore::open("postgres://herald@127.0.0.1:1/postgres?connect_timeout=2", Default::default()).await;
    assert!(format!("{:#}", refused.err().expect("nothing listens on port 1")).contains("connecting to postgresql"));
}
