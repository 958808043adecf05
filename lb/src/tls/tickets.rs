//! Session tickets sealed with keys the cluster shares, so a client that got a ticket from one
//! appliance resumes on any other.
//!
//! The cluster's leader generates a key on a schedule and replicates it (sealed) through Raft;
//! every node hands the opened keys to [`ClusterTicketer::replace`]. A ticket is
//! `key id (8) || nonce (12) || AES-256-GCM(state) || tag (16)`, the key id bound as associated
//! data. The newest key seals; every kept key opens, so tickets outlive one rotation. Until the
//! first cluster key arrives (a node that has not heard from a leader yet), a key this process
//! made at start seals: tickets then resume on this node only.

use std::sync::Arc;

use arc_swap::ArcSwap;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// Bytes of the key id at the front of every ticket.
pub const KEY_ID_LEN: usize = 8;
const TAG_LEN: usize = 16;
/// Tickets longer than this are not ours: rustls' own session state is a few hundred bytes.
const MAX_TICKET: usize = 16 * 1024;

/// One ticket key, opened: its id and its raw 256-bit AES key.
pub struct TicketKey {
    pub id: [u8; KEY_ID_LEN],
    pub secret: [u8; 32],
}

struct Key {
    id: [u8; KEY_ID_LEN],
    aead: LessSafeKey,
}

struct Keys {
    /// Seals new tickets.
    current: Key,
    /// Open tickets sealed before the last rotations.
    older: Vec<Key>,
    lifetime_secs: u32,
}

/// rustls' `ProducesTickets` over the cluster's keys.
pub struct ClusterTicketer {
    keys: ArcSwap<Keys>,
    rng: SystemRandom,
}

impl std::fmt::Debug for ClusterTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = self.keys.load();
        f.debug_struct("ClusterTicketer")
            .field("keys", &(1 + k.older.len()))
            .field("lifetime_secs", &k.lifetime_secs)
            .finish()
    }
}

/// The advertised ticket lifetime before the cluster's keys arrive.
const LOCAL_LIFETIME_SECS: u32 = 6 * 3600;

impl ClusterTicketer {
    /// A ticketer with one random key of this process's own.
    pub fn new() -> ClusterTicketer {
        let rng = SystemRandom::new();
        let mut id = [0u8; KEY_ID_LEN];
        let mut secret = [0u8; 32];
        // A failing system RNG leaves zeros; the key is replaced as soon as the cluster's
        // arrive, and rustls would fail the handshake itself without randomness.
        if rng.fill(&mut id).is_err() || rng.fill(&mut secret).is_err() {
            tracing::error!("the system random generator failed; local ticket key is weak");
        }
        let current = key(&TicketKey { id, secret });
        ClusterTicketer {
            keys: ArcSwap::from_pointee(Keys {
                current,
                older: Vec::new(),
                lifetime_secs: LOCAL_LIFETIME_SECS,
            }),
            rng,
        }
    }

    /// Replaces the keys: `keys` newest first, the first seals new tickets. Tickets are
    /// advertised with `lifetime_secs`. An empty list changes nothing.
    pub fn replace(&self, keys: &[TicketKey], lifetime_secs: u32) {
        let mut keys = keys.iter().map(key);
        let Some(current) = keys.next() else {
            return;
        };
        self.keys.store(Arc::new(Keys {
            current,
            older: keys.collect(),
            lifetime_secs,
        }));
    }

    /// The id of the key that seals new tickets.
    pub fn current_id(&self) -> [u8; KEY_ID_LEN] {
        self.keys.load().current.id
    }
}

impl Default for ClusterTicketer {
    fn default() -> Self {
        ClusterTicketer::new()
    }
}

fn key(k: &TicketKey) -> Key {
    // AES-256 takes any 32 bytes: `new` cannot fail for a key of the right length.
    let unbound = UnboundKey::new(&AES_256_GCM, &k.secret)
        .unwrap_or_else(|_| unreachable!("a 32-byte AES-256 key"));
    Key {
        id: k.id,
        aead: LessSafeKey::new(unbound),
    }
}

impl rustls::server::ProducesTickets for ClusterTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.keys.load().lifetime_secs
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let keys = self.keys.load();
        let k = &keys.current;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(KEY_ID_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&k.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let (head, body) = out.split_at_mut(KEY_ID_LEN + NONCE_LEN);
        let tag = k
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&head[..KEY_ID_LEN]),
                body,
            )
            .ok()?;
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < KEY_ID_LEN + NONCE_LEN + TAG_LEN || ticket.len() > MAX_TICKET {
            return None;
        }
        let (id, rest) = ticket.split_at(KEY_ID_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let keys = self.keys.load();
        let k = std::iter::once(&keys.current)
            .chain(keys.older.iter())
            .find(|k| k.id == id)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = k.aead.open_in_place(nonce, Aad::from(id), &mut buf).ok()?;
        let len = plain.len();
        buf.truncate(len);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use rustls::server::ProducesTickets;

    use super::*;

    fn k(id: u8) -> TicketKey {
        TicketKey {
            id: [id; KEY_ID_LEN],
            secret: [id.wrapping_mul(7); 32],
        }
    }

    #[test]
    fn a_ticket_opens_on_another_node_with_the_same_keys() {
        let a = ClusterTicketer::new();
        let b = ClusterTicketer::new();
        // Before the cluster's keys: each node's own key, so no cross-node resumption.
        let t = a.encrypt(b"session state").expect("sealed");
        assert_eq!(b.decrypt(&t), None);
        assert_eq!(a.decrypt(&t).as_deref(), Some(&b"session state"[..]));

        a.replace(&[k(1)], 3600);
        b.replace(&[k(1)], 3600);
        let t = a.encrypt(b"session state").expect("sealed");
        assert_eq!(&t[..KEY_ID_LEN], &[1; KEY_ID_LEN]);
        assert_eq!(b.decrypt(&t).as_deref(), Some(&b"session state"[..]));
        assert_eq!(b.lifetime(), 3600);
    }

    #[test]
    fn kept_keys_open_old_tickets_and_dropped_keys_do_not() {
        let t = ClusterTicketer::new();
        t.replace(&[k(1)], 60);
        let old = t.encrypt(b"one").expect("sealed");
        // Rotated: key 2 seals, key 1 still opens.
        t.replace(&[k(2), k(1)], 60);
        assert_eq!(t.current_id(), [2; KEY_ID_LEN]);
        assert_eq!(t.decrypt(&old).as_deref(), Some(&b"one"[..]));
        let new = t.encrypt(b"two").expect("sealed");
        assert_eq!(&new[..KEY_ID_LEN], &[2; KEY_ID_LEN]);
        // Key 1 dropped: its tickets no longer open (a full handshake follows).
        t.replace(&[k(3), k(2)], 60);
        assert_eq!(t.decrypt(&old), None);
        assert_eq!(t.decrypt(&new).as_deref(), Some(&b"two"[..]));
        // An empty list keeps what there is.
        t.replace(&[], 60);
        assert_eq!(t.current_id(), [3; KEY_ID_LEN]);
    }

    #[test]
    fn altered_or_malformed_tickets_are_refused() {
        let t = ClusterTicketer::new();
        t.replace(&[k(1)], 60);
        let good = t.encrypt(b"state").expect("sealed");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert_eq!(t.decrypt(&bad), None, "flipped byte {i}");
        }
        for len in 0..good.len() {
            assert_eq!(t.decrypt(&good[..len]), None, "truncated to {len}");
        }
        assert_eq!(t.decrypt(&vec![1u8; MAX_TICKET + 1]), None);
    }
}
