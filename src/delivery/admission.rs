//! Room for fresh deliveries handed straight from ingest to the engine.
//!
//! A delivery created while its webhook's lane has room and nothing older
//! is due goes to the engine in memory: ingest writes it already leased,
//! and it is never claimed from the store. That spares the hot path a
//! read, a row update and a commit per delivery. The engine sets the room
//! from its schedule; each ingest borrows, as data, the room of its
//! account's webhooks (no more per webhook than it has events: an event
//! makes at most one delivery per webhook), and gives back what it did not
//! use once its commit is known. Borrowed room is counted as on its way,
//! so concurrent ingests never hand over more than a lane can hold.

use std::sync::Mutex;

use crate::store::{HandOver, IdMap, IdSet};

#[derive(Default)]
pub(super) struct Admission {
    rooms: Mutex<Rooms>,
}

#[derive(Default)]
struct Rooms {
    per_webhook: IdMap<Room>,
    /// Webhooks with free room, by account: what an ingest can borrow.
    free_by_account: IdMap<IdSet>,
    /// Room across all webhooks: memory stays bounded however many have room.
    total: Count,
}

#[derive(Debug)]
struct Room {
    account_id: String,
    /// Room is offered only while it is open (see `Engine::refresh_room`).
    open: bool,
    count: Count,
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Count {
    /// Deliveries ingest may still hand over.
    free: usize,
    /// Lent to an ingest or handed over, and not yet arrived in the lane.
    on_the_way: usize,
}

impl Count {
    fn set(&mut self, open: bool, limit: usize, queued: usize) {
        self.free = if open { limit.saturating_sub(queued + self.on_the_way) } else { 0 };
    }

    fn lend(&mut self, n: usize) {
        self.free -= n;
        self.on_the_way += n;
    }

    fn give_back(&mut self, n: usize, open: bool) {
        self.on_the_way = self.on_the_way.saturating_sub(n);
        if open {
            self.free += n;
        }
    }
}

impl Rooms {
    /// Keeps `free_by_account` true to one webhook's room.
    fn note(&mut self, webhook_id: &str) {
        let Some(room) = self.per_webhook.get(webhook_id) else { return };
        let free = room.count.free > 0;
        let account = room.account_id.as_str();
        match self.free_by_account.get_mut(account) {
            Some(webhooks) if !free => {
                webhooks.remove(webhook_id);
                if webhooks.is_empty() {
                    self.free_by_account.remove(account);
                }
            }
            Some(webhooks) => {
                if !webhooks.contains(webhook_id) {
                    webhooks.insert(webhook_id.to_owned());
                }
            }
            None if free => {
                let webhooks = self.free_by_account.entry(account.to_owned()).or_default();
                webhooks.insert(webhook_id.to_owned());
            }
            None => {}
        }
        if !room.open && room.count == Count::default() {
            self.per_webhook.remove(webhook_id);
        }
    }
}

impl Admission {
    /// Sets a webhook's room: what its lane can still hold beyond `queued`
    /// and what is on its way, or nothing when `open` is false. Opening
    /// needs the webhook's account (`None`: only an existing room can be
    /// opened).
    pub(super) fn set(&self, webhook_id: &str, account_id: Option<&str>, open: bool, lane_limit: usize, queued: usize) {
        let rooms = &mut *self.rooms.lock().unwrap();
        match rooms.per_webhook.get_mut(webhook_id) {
            Some(room) => {
                room.open = open;
                room.count.set(open, lane_limit, queued);
            }
            None => match account_id {
                Some(account_id) if open && lane_limit > queued => {
                    let count = Count { free: lane_limit - queued, on_the_way: 0 };
                    rooms
                        .per_webhook
                        .insert(webhook_id.to_owned(), Room { account_id: account_id.to_owned(), open, count });
                }
                _ => return,
            },
        }
        rooms.note(webhook_id);
    }

    /// Closes a webhook's room: older deliveries wait in the store.
    pub(super) fn close(&self, webhook_id: &str) {
        self.set(webhook_id, None, false, 0, 0);
    }

    /// Sets the room across all webhooks, given what all lanes hold.
    pub(super) fn set_total(&self, limit: usize, queued: usize) {
        self.rooms.lock().unwrap().total.set(true, limit, queued);
    }

    /// Lends an ingest of `n_events` events for `account_id` the room of
    /// that account's webhooks.
    pub(super) fn lend(&self, account_id: &str, n_events: usize) -> HandOver {
        let rooms = &mut *self.rooms.lock().unwrap();
        let mut lent = HandOver::default();
        let Some(webhooks) = rooms.free_by_account.get(account_id) else { return lent };
        for webhook_id in webhooks {
            let Some(room) = rooms.per_webhook.get_mut(webhook_id) else { continue };
            let n = room.count.free.min(n_events).min(rooms.total.free);
            if n > 0 {
                room.count.lend(n);
                rooms.total.lend(n);
                lent.per_webhook.insert(webhook_id.clone(), n);
            }
        }
        for webhook_id in lent.per_webhook.keys() {
            rooms.note(webhook_id);
        }
        lent
    }

    /// Room lent and not used (all of it, when the ingest failed).
    pub(super) fn give_back(&self, unused: &HandOver) {
        let rooms = &mut *self.rooms.lock().unwrap();
        for (webhook_id, &n) in &unused.per_webhook {
            if n == 0 {
                continue;
            }
            rooms.total.give_back(n, true);
            if let Some(room) = rooms.per_webhook.get_mut(webhook_id) {
                room.count.give_back(n, room.open);
                rooms.note(webhook_id);
            }
        }
    }

    /// `n` handed deliveries of a webhook reached its lane.
    pub(super) fn arrived(&self, webhook_id: &str, n: usize) {
        let rooms = &mut *self.rooms.lock().unwrap();
        rooms.total.on_the_way = rooms.total.on_the_way.saturating_sub(n);
        if let Some(room) = rooms.per_webhook.get_mut(webhook_id) {
            room.count.on_the_way = room.count.on_the_way.saturating_sub(n);
            rooms.note(webhook_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lent(admission: &Admission, account: &str, n_events: usize) -> Vec<(String, usize)> {
        let mut lent: Vec<_> = admission.lend(account, n_events).per_webhook.into_iter().collect();
        lent.sort();
        lent
    }

    fn one(webhook: &str, n: usize) -> HandOver {
        HandOver { per_webhook: [(webhook.to_owned(), n)].into_iter().collect() }
    }

    #[test]
    fn room_is_what_the_lane_can_hold_beyond_what_is_queued_or_on_its_way() {
        let admission = Admission::default();
        admission.set_total(100, 0);
        assert!(lent(&admission, "acc", 10).is_empty(), "an unknown webhook has no room");
        admission.set("w", Some("acc"), true, 4, 1);
        assert_eq!(lent(&admission, "acc", 10), [("w".to_owned(), 3)], "three fit beside the one queued");
        assert!(lent(&admission, "acc", 10).is_empty(), "lent room is on its way");
        // The engine recomputes before the three arrive: still full.
        admission.set("w", Some("acc"), true, 4, 1);
        assert!(lent(&admission, "acc", 1).is_empty());
        admission.give_back(&one("w", 1));
        assert_eq!(lent(&admission, "acc", 5), [("w".to_owned(), 1)], "room given back can be lent again");
        admission.arrived("w", 3);
        admission.set("w", Some("acc"), true, 4, 2);
        assert_eq!(lent(&admission, "acc", 5), [("w".to_owned(), 2)]);
    }

    #[test]
    fn an_ingest_borrows_no_more_per_webhook_than_it_has_events_and_only_its_accounts() {
        let admission = Admission::default();
        admission.set_total(100, 0);
        admission.set("a", Some("acc"), true, 10, 0);
        admission.set("b", Some("acc"), true, 10, 0);
        admission.set("c", Some("other"), true, 10, 0);
        assert_eq!(lent(&admission, "acc", 2), [("a".to_owned(), 2), ("b".to_owned(), 2)]);
        assert_eq!(lent(&admission, "acc", 20), [("a".to_owned(), 8), ("b".to_owned(), 8)]);
        assert_eq!(lent(&admission, "other", 1), [("c".to_owned(), 1)]);
    }

    #[test]
    fn room_across_all_webhooks_bounds_every_webhook() {
        let admission = Admission::default();
        admission.set_total(3, 1);
        admission.set("a", Some("acc"), true, 10, 0);
        admission.set("b", Some("acc"), true, 10, 0);
        let first: usize = admission.lend("acc", 10).per_webhook.values().sum();
        assert_eq!(first, 2, "two fit beside the one queued");
        assert!(lent(&admission, "acc", 10).is_empty());
        admission.give_back(&one("b", 1));
        let again: usize = admission.lend("acc", 10).per_webhook.values().sum();
        assert_eq!(again, 1);
    }

    #[test]
    fn a_closed_webhook_lends_nothing_until_reopened_and_room_given_back_stays_closed() {
        let admission = Admission::default();
        admission.set_total(100, 0);
        admission.set("w", Some("acc"), true, 2, 0);
        let borrowed = admission.lend("acc", 1);
        admission.close("w");
        admission.give_back(&borrowed);
        assert!(lent(&admission, "acc", 5).is_empty(), "older deliveries wait in the store");
        admission.set("w", None, true, 2, 0);
        assert!(lent(&admission, "acc", 5).is_empty(), "a closed room forgets its account: its lane reopens it");
        admission.set("w", Some("acc"), true, 2, 0);
        assert_eq!(lent(&admission, "acc", 5), [("w".to_owned(), 2)]);
    }
}
