//! Where things live in a cluster: every key (a conversation, an agent, a skill queue)
//! falls in one of [`SHARDS`] shards, and each shard belongs to one live node, chosen by
//! rendezvous (highest random weight) hashing over the member list.
//!
//! Rendezvous hashing needs no ring or table: every node that knows the same member list
//! computes the same owner for every shard, and when a node leaves only its own shards
//! move (each to the node with the next-highest weight); when one joins, only the shards
//! it now wins move to it, about `1 / n` of them.
//!
//! Co-location: an id may end in a placement key after a `~` (`c-17~general`). Such an
//! id is placed by its key alone, as Redis Cluster places a key by its hash tag and
//! Akka Cluster Sharding by the shard id its extractor picks: conversation `c-17~general`,
//! agent `alice~general` and skill `general`'s queue are in one shard, so the messages of
//! a lifecycle among them stay on one node. The key is the client's choice; without a `~`
//! an id is its own key and spreads by its hash.
//!
//! The hash is our own FNV-1a with a SplitMix64 finalizer, not std's `DefaultHasher`,
//! whose algorithm is not promised to stay the same between Rust releases: nodes built
//! by different compilers must still agree.

/// Shards in a cluster. Fixed: a key's shard never changes, so a shard is the unit that
/// leases, handovers and failovers move. 256 spreads well over up to a few dozen nodes.
pub const SHARDS: u16 = 256;

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// SplitMix64's finalizer: spreads FNV's weak low bits over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What an id is placed by: the text after its `~`, or the whole id.
pub fn placement_key(id: &str) -> &str {
    id.rsplit_once('~').map_or(id, |(_, key)| key)
}

/// The shard of an id (of its [`placement_key`]).
pub fn shard_of(id: &str) -> u16 {
    (mix(fnv1a(placement_key(id).as_bytes())) % u64::from(SHARDS)) as u16
}

/// A node's weight for a shard: the shard goes to the live node with the highest.
pub fn weight(node: &str, shard: u16) -> u64 {
    mix(fnv1a(node.as_bytes()) ^ mix(u64::from(shard) + 1))
}

/// The owner of `shard` among `nodes` (names): the highest weight, ties (never seen in
/// practice) broken by name so that every node still agrees. `None` without nodes.
pub fn owner<N: AsRef<str>>(shard: u16, nodes: &[N]) -> Option<&N> {
    nodes
        .iter()
        .max_by(|a, b| (weight(a.as_ref(), shard), a.as_ref()).cmp(&(weight(b.as_ref(), shard), b.as_ref())))
}

/// The shards that `node` owns among `nodes`.
pub fn owned_by<N: AsRef<str>>(node: &str, nodes: &[N]) -> Vec<u16> {
    (0..SHARDS)
        .filter(|s| owner(*s, nodes).is_some_and(|n| n.as_ref() == node))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_pinned() {
        // FNV-1a's published test vectors: a placement must not change with a build.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(shard_of("c-1"), shard_of("c-1"));
    }

    #[test]
    fn an_id_with_a_placement_key_is_placed_by_the_key_alone() {
        assert_eq!(placement_key("c-17~general"), "general");
        assert_eq!(placement_key("general"), "general");
        for id in ["c-17~general", "alice~general", "lt1-c9~general"] {
            assert_eq!(shard_of(id), shard_of("general"), "{id}");
        }
        // Without a key, ids spread: of 100 conversations, not all share general's shard.
        let with_general = (0..100).filter(|i| shard_of(&format!("c-{i}")) == shard_of("general"));
        assert!(with_general.count() < 10);
    }

    #[test]
    fn keys_spread_over_the_shards() {
        let mut counts = vec![0u32; SHARDS as usize];
        for i in 0..256_000 {
            counts[shard_of(&format!("conversation-{i}")) as usize] += 1;
        }
        // 1 000 per shard expected; a fair hash stays within a few standard deviations.
        assert!(counts.iter().all(|c| (850..=1150).contains(c)), "{counts:?}");
    }

    #[test]
    fn every_shard_has_one_owner_and_three_nodes_share_them_evenly() {
        let nodes = ["node-a", "node-b", "node-c"];
        let mut total = 0;
        for node in nodes {
            let mine = owned_by(node, &nodes);
            // 85 1/3 expected each.
            assert!((65..=106).contains(&mine.len()), "{node}: {}", mine.len());
            total += mine.len();
        }
        assert_eq!(total, SHARDS as usize);
        assert_eq!(owner::<&str>(0, &[]), None);
    }

    #[test]
    fn the_member_order_does_not_matter() {
        let a = ["n1", "n2", "n3", "n4"];
        let b = ["n3", "n1", "n4", "n2"];
        for s in 0..SHARDS {
            assert_eq!(owner(s, &a), owner(s, &b));
        }
    }

    #[test]
    fn a_node_leaving_moves_only_its_own_shards() {
        let before = ["n1", "n2", "n3", "n4"];
        let after = ["n1", "n2", "n4"];
        for s in 0..SHARDS {
            let was = *owner(s, &before).expect("owner");
            let now = *owner(s, &after).expect("owner");
            if was != "n3" {
                assert_eq!(was, now, "shard {s} moved though its owner stayed");
            }
        }
    }

    #[test]
    fn a_node_joining_takes_about_its_share_and_nothing_else_moves() {
        let before = ["n1", "n2", "n3"];
        let after = ["n1", "n2", "n3", "n4"];
        let mut moved = 0;
        for s in 0..SHARDS {
            let was = *owner(s, &before).expect("owner");
            let now = *owner(s, &after).expect("owner");
            if was != now {
                assert_eq!(now, "n4", "shard {s} moved between old members");
                moved += 1;
            }
        }
        // A quarter (64) expected.
        assert!((40..=90).contains(&moved), "{moved}");
    }
}
