//! Room for fresh deliveries handed straight from ingest to the engine.
//!
//! A delivery created while its webhook's lane has room and nothing older
//! is due goes to the engine in memory: ingest writes it already leased,
//! and it is never claimed from the store. That spares the hot path a
//! read, a row update and a commit per delivery. The engine sets the room
//! from its schedule; the store's writer takes it, inside the ingest
//! transaction, so a delivery is handed over exactly when its row says so.

use std::sync::Mutex;

use crate::store::{Admit, IdMap};

#[derive(Default)]
pub(super) struct Admission {
    rooms: Mutex<Rooms>,
}

#[derive(Default)]
struct Rooms {
    per_webhook: IdMap<Room>,
    /// Room across all webhooks: memory stays bounded however many have room.
    total: Room,
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Room {
    /// Deliveries ingest may still hand over.
    free: usize,
    /// Handed over by ingest and not yet arrived in the lane.
    on_the_way: usize,
}

impl Room {
    fn set(&mut self, open: bool, limit: usize, queued: usize) {
        self.free = if open { limit.saturating_sub(queued + self.on_the_way) } else { 0 };
    }

    fn take(&mut self) {
        self.free -= 1;
        self.on_the_way += 1;
    }

    fn give_back(&mut self) {
        self.on_the_way = self.on_the_way.saturating_sub(1);
        self.free += 1;
    }
}

impl Admission {
    /// Sets a webhook's room: what its lane can still hold beyond `queued`
    /// and what is on its way, or nothing when `open` is false.
    pub(super) fn set(&self, webhook_id: &str, open: bool, lane_limit: usize, queued: usize) {
        let per_webhook = &mut self.rooms.lock().unwrap().per_webhook;
        match per_webhook.get_mut(webhook_id) {
            Some(room) => {
                room.set(open, lane_limit, queued);
                if *room == Room::default() {
                    per_webhook.remove(webhook_id);
                }
            }
            None if open && lane_limit > queued => {
                per_webhook.insert(webhook_id.to_owned(), Room { free: lane_limit - queued, on_the_way: 0 });
            }
            None => {}
        }
    }

    /// Sets the room across all webhooks, given what all lanes hold.
    pub(super) fn set_total(&self, limit: usize, queued: usize) {
        self.rooms.lock().unwrap().total.set(true, limit, queued);
    }

    /// `n` handed deliveries of a webhook reached its lane.
    pub(super) fn arrived(&self, webhook_id: &str, n: usize) {
        let rooms = &mut *self.rooms.lock().unwrap();
        rooms.total.on_the_way = rooms.total.on_the_way.saturating_sub(n);
        if let Some(room) = rooms.per_webhook.get_mut(webhook_id) {
            room.on_the_way = room.on_the_way.saturating_sub(n);
        }
    }
}

impl Admit for Admission {
    fn take(&self, webhook_id: &str) -> bool {
        let rooms = &mut *self.rooms.lock().unwrap();
        match rooms.per_webhook.get_mut(webhook_id) {
            Some(room) if room.free > 0 && rooms.total.free > 0 => {
                room.take();
                rooms.total.take();
                true
            }
            _ => false,
        }
    }

    fn give_back(&self, webhook_id: &str) {
        let rooms = &mut *self.rooms.lock().unwrap();
        rooms.total.give_back();
        if let Some(room) = rooms.per_webhook.get_mut(webhook_id) {
            room.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_what_the_lane_can_hold_beyond_what_is_queued_or_on_its_way() {
        let admission = Admission::default();
        admission.set_total(100, 0);
        assert!(!admission.take("w"), "an unknown webhook has no room");
        admission.set("w", true, 4, 1);
        assert!(admission.take("w") && admission.take("w") && admission.take("w"));
        assert!(!admission.take("w"), "three fit beside the one queued");
        // The engine recomputes before the three arrive: still full.
        admission.set("w", true, 4, 1);
        assert!(!admission.take("w"));
        admission.give_back("w");
        assert!(admission.take("w"), "room given back can be taken again");
        admission.arrived("w", 3);
        admission.set("w", true, 4, 2);
        assert!(admission.take("w") && admission.take("w") && !admission.take("w"));
    }

    #[test]
    fn room_across_all_webhooks_bounds_every_webhook() {
        let admission = Admission::default();
        admission.set_total(3, 1);
        admission.set("a", true, 10, 0);
        admission.set("b", true, 10, 0);
        assert!(admission.take("a") && admission.take("b"));
        assert!(!admission.take("a") && !admission.take("b"), "two fit beside the one queued");
        admission.give_back("b");
        assert!(admission.take("a"));
    }

    #[test]
    fn a_closed_webhook_takes_nothing_until_reopened() {
        let admission = Admission::default();
        admission.set_total(100, 0);
        admission.set("w", true, 2, 0);
        admission.set("w", false, 2, 0);
        assert!(!admission.take("w"));
        admission.set("w", true, 2, 0);
        assert!(admission.take("w"));
    }
}
