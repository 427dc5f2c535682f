//! One skill's queue as a pure value: ranked entries, a view of which agents have room,
//! and the matching rule that pairs them.
//!
//! The view of agents is advisory: the agent actor is the only authority on room and
//! declines an offer that no longer fits. The queue lowers its view of an agent's room
//! as soon as it makes an offer, so it does not pile offers onto one agent, and takes
//! the agent's word (sent with every decline and every change) as the truth.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::capacity::Weight;
use crate::domain::conversation::RouteHints;
use crate::domain::rank::RankKey;
use crate::domain::skill::{AgentChoice, GroupRouting};
use crate::ids::{AgentId, ConversationId, GroupId, SkillId};
use crate::time::Timestamp;

/// A conversation as its queue sees it; sent by the conversation whenever it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub conversation_id: ConversationId,
    /// The conversation's own skill (differs from the queue's for fallback entries).
    pub home_skill: SkillId,
    pub epoch: u64,
    pub actionable: bool,
    pub key: RankKey,
    /// Weight of the conversation once assigned (active weight of its skill).
    pub weight: Weight,
    pub hints: RouteHints,
    pub queued_at: Timestamp,
    pub due_at: Option<Timestamp>,
    pub overdue: bool,
    pub priority: i32,
    /// The conversation stands in its fallback skill's queue too.
    pub in_fallback: bool,
    /// Why it waits for an agent (when actionable): the queue-health split.
    #[serde(default)]
    pub because: Because,
    /// The consumer's first conversation.
    #[serde(default)]
    pub first_time: bool,
}

/// Why an actionable conversation waits for an agent (LivePerson's queue health).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Because {
    /// The consumer wrote last.
    #[default]
    ConsumerWroteLast,
    /// A follow-up (manual SLA) came due.
    FollowUpDue,
    /// Transferred, not assigned since.
    Transferred,
    /// Returned to the queue by its agent.
    Returned,
}

/// What an agent tells its skill queues about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRoom {
    pub online: bool,
    /// Away or back soon: no new work, but not offline (`fallback_when_away = false`
    /// counts such an agent as available).
    pub away: bool,
    /// Online, under `max_open` and not held back by warm-up.
    pub accepting: bool,
    /// `max_slots + overflow - busy`.
    pub free: Weight,
    /// Σ weights held and offered.
    pub busy: Weight,
    /// `max_slots`, as a weight: utilization is `busy / slots`.
    pub slots: Weight,
}

impl AgentRoom {
    /// `busy / slots` in millionths (an agent of no slots counts as full).
    fn utilization(&self) -> u64 {
        if self.slots == Weight::ZERO {
            return u64::MAX;
        }
        u64::from(self.busy.0) * 1_000_000 / u64::from(self.slots.0)
    }
}

/// A pairing the queue wants to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub conversation_id: ConversationId,
    pub epoch: u64,
    pub agent_id: AgentId,
    pub weight: Weight,
}

/// Why an offer came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Declined {
    /// The agent had no room (its current room comes with the decline).
    NoRoom,
    /// The agent rejected it, or let it time out: try another agent.
    Rejected,
    /// The conversation had moved on (assigned elsewhere, closed, transferred).
    Stale,
    /// The offer was lost (the agent's actor restarted): nobody declined anything.
    Lost,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Place {
    Ranked,
    Targeted(AgentId),
    /// Not actionable: visible, never offered.
    Waiting,
    InFlight(AgentId),
}

#[derive(Clone, Debug)]
struct Slot {
    entry: QueueEntry,
    place: Place,
    /// Agents that rejected or ignored an offer of this entry.
    declined: Vec<AgentId>,
    /// In flight, and its agent said once it does not hold it ([`SkillQueue::offers_held`]).
    unanswered: bool,
}

/// Figures of one queue for `GET /v1/queue-health`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueFigures {
    pub unassigned: usize,
    pub actionable: usize,
    pub not_actionable: usize,
    pub offered: usize,
    pub overdue_unassigned: usize,
    /// `actionable` split by why each waits (LivePerson's queue health).
    pub actionable_consumer_wrote_last: usize,
    pub actionable_follow_up_due: usize,
    pub actionable_transferred: usize,
    pub actionable_returned: usize,
    /// Unassigned conversations of first-time consumers.
    pub first_time_unassigned: usize,
    pub online_agents: usize,
    pub available_slots: f64,
    pub wait_p50_secs: u64,
    pub wait_p90_secs: u64,
    pub max_wait_secs: u64,
    /// How long a conversation opened now would wait ([`SkillQueue::estimated_wait`]);
    /// `None` when no conversation has left the line lately to measure its pace.
    pub estimated_wait_secs: Option<u64>,
}

/// How far back the line's pace is measured for the estimated wait.
pub const PACE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Departures remembered for the pace (the oldest go first).
const PACE_MAX: usize = 10_000;

/// A row of `GET /v1/skills/{id}/queue`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueRow {
    pub conversation_id: ConversationId,
    pub actionable: bool,
    /// `ranked`, `offered`, `reserved_for_agent` or `waiting_for_consumer`.
    pub place: String,
    pub offered_to: Option<AgentId>,
    pub queued_at: Timestamp,
    pub due_at: Option<Timestamp>,
    pub overdue: bool,
    pub priority: i32,
    pub fallback_from: Option<SkillId>,
}

#[derive(Debug)]
pub struct SkillQueue {
    pub skill: SkillId,
    slots: HashMap<ConversationId, Slot>,
    /// Keyed by rank, then id: two conversations of the same rank (their keys are
    /// unique per node, not across a cluster's nodes) are both kept.
    ranked: BTreeMap<(RankKey, ConversationId), ConversationId>,
    targeted: HashMap<AgentId, BTreeMap<(RankKey, ConversationId), ConversationId>>,
    agents: HashMap<AgentId, KnownAgent>,
    /// Accepting agents with room by group tier (see [`SkillQueue::tier_of`]), each
    /// tier in the order its agents are chosen (`choice`): lowest utilization or most
    /// free room first, then least recently offered. No empty tier is kept.
    by_room: BTreeMap<usize, BTreeSet<(u64, u64, AgentId)>>,
    choice: AgentChoice,
    /// The skill's group routing; `None`: one tier of every agent.
    groups: Option<GroupRouting>,
    /// Offers made to the agents of each listed group (the split's tally).
    group_offers: Vec<u64>,
    offer_seq: u64,
    /// Some entry was passed over because every agent with room had declined it.
    retry_wanted: bool,
    /// How many entries weigh how much (a fallback queue mixes skills' weights).
    weights: BTreeMap<Weight, usize>,
    /// When actionable entries left the line (assigned, closed, moved), within
    /// `PACE_WINDOW`, each with the time since the departure before it when the line
    /// was not empty in between (a "busy gap": every agent was busy): the pace of the
    /// estimated wait.
    departures: VecDeque<(Timestamp, Option<Duration>)>,
    /// The last departure, and whether others still waited in line after it.
    last_departure: Option<(Timestamp, bool)>,
}

/// What the queue knows of an agent: its room as last told, when it was last offered,
/// and its group.
#[derive(Clone, Debug)]
struct KnownAgent {
    room: AgentRoom,
    last_offer: u64,
    group: Option<GroupId>,
}

impl KnownAgent {
    fn index_key(&self, id: &AgentId, choice: AgentChoice) -> Option<(u64, u64, AgentId)> {
        let order = match choice {
            AgentChoice::Utilization => self.room.utilization(),
            AgentChoice::MostFree => u64::from(u32::MAX - self.room.free.0),
        };
        (self.room.accepting && self.room.free > Weight::ZERO).then(|| (order, self.last_offer, id.clone()))
    }
}

impl SkillQueue {
    /// A queue that chooses agents by utilization (the default).
    pub fn new(skill: SkillId) -> Self {
        SkillQueue::with_choice(skill, AgentChoice::default())
    }

    pub fn with_choice(skill: SkillId, choice: AgentChoice) -> Self {
        SkillQueue {
            skill,
            choice,
            slots: HashMap::new(),
            ranked: BTreeMap::new(),
            targeted: HashMap::new(),
            agents: HashMap::new(),
            by_room: BTreeMap::new(),
            groups: None,
            group_offers: Vec::new(),
            offer_seq: 0,
            retry_wanted: false,
            weights: BTreeMap::new(),
            departures: VecDeque::new(),
            last_departure: None,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn contains(&self, id: &ConversationId) -> bool {
        self.slots.contains_key(id)
    }

    /// Whether an agent of the queue keeps its conversations from falling back: one
    /// online, or (`away_counts`: the skill's `fallback_when_away = false`) one away.
    pub fn has_available_agent(&self, away_counts: bool) -> bool {
        self.agents
            .values()
            .any(|v| v.room.online || (away_counts && v.room.away))
    }

    /// Inserts or updates an entry. A newer epoch cancels an offer in flight for the older one.
    pub fn upsert(&mut self, entry: QueueEntry) {
        let id = entry.conversation_id.clone();
        let (declined, in_flight) = match self.slots.get(&id) {
            Some(slot) if slot.entry.epoch == entry.epoch => {
                let in_flight = match &slot.place {
                    Place::InFlight(a) => Some(a.clone()),
                    _ => None,
                };
                (slot.declined.clone(), in_flight)
            }
            _ => (Vec::new(), None),
        };
        self.unindex(&id);
        let place = match in_flight {
            Some(agent) => Place::InFlight(agent),
            None => Self::place_for(&entry),
        };
        self.index(&id, &entry.key, &place);
        *self.weights.entry(entry.weight).or_default() += 1;
        if let Some(old) = self.slots.insert(
            id,
            Slot {
                entry,
                place,
                declined,
                unanswered: false,
            },
        ) {
            self.forget_weight(old.entry.weight);
        }
    }

    pub fn remove(&mut self, id: &ConversationId) -> bool {
        self.unindex(id);
        match self.slots.remove(id) {
            Some(old) => {
                self.forget_weight(old.entry.weight);
                true
            }
            None => false,
        }
    }

    /// Removes an entry that left the queue at `now`; an actionable one counts in the
    /// line's pace (whether it was assigned, closed or moved, the line moved up).
    pub fn remove_at(&mut self, id: &ConversationId, now: Timestamp) -> bool {
        let in_line = self
            .slots
            .get(id)
            .is_some_and(|s| s.entry.actionable && s.entry.home_skill == self.skill);
        let removed = self.remove(id);
        if in_line {
            if self.departures.len() == PACE_MAX {
                self.departures.pop_front();
            }
            let busy_gap = match self.last_departure {
                Some((t, true)) => Some(now.since(t)),
                _ => None,
            };
            self.departures.push_back((now, busy_gap));
            self.last_departure = Some((now, !self.ranked.is_empty()));
        }
        removed
    }

    /// How long a conversation of weight `weight` opened at `now` would wait: none if
    /// an agent has room for it and nothing waits ahead; otherwise, with `k` waiting
    /// ahead of it in line and the line moving at `r` conversations a second while all
    /// agents were busy, `(k + 1) / r` (the M/M/c wait of a newcomer behind `k`: `k + 1`
    /// departures at the rate busy agents free up). `r` is measured over the last
    /// `PACE_WINDOW`: the departures that ended a busy gap over the sum of those gaps.
    /// `None` when no busy gap ended in the window (no pace to go by).
    pub fn estimated_wait(&mut self, now: Timestamp, weight: Weight) -> Option<Duration> {
        while self
            .departures
            .front()
            .is_some_and(|(t, _)| now.since(*t) > PACE_WINDOW)
        {
            self.departures.pop_front();
        }
        let ahead = self.ranked.len();
        // Room is looked for only when nobody waits ahead (a scan of the agents).
        if ahead == 0 && self.agents.values().any(|v| v.room.accepting && v.room.free >= weight) {
            return Some(Duration::ZERO);
        }
        let (busy_n, busy_secs) = self
            .departures
            .iter()
            .filter_map(|(_, gap)| *gap)
            .fold((0usize, 0.0f64), |(n, s), g| (n + 1, s + g.as_secs_f64()));
        if busy_n == 0 {
            return None;
        }
        let per_departure = busy_secs / busy_n as f64;
        Some(Duration::from_secs_f64((ahead as f64 + 1.0) * per_departure))
    }

    fn forget_weight(&mut self, w: Weight) {
        if let Some(n) = self.weights.get_mut(&w) {
            *n -= 1;
            if *n == 0 {
                self.weights.remove(&w);
            }
        }
    }

    fn place_for(entry: &QueueEntry) -> Place {
        match (&entry.hints.target_agent, entry.actionable) {
            (_, false) => Place::Waiting,
            (Some(agent), true) => Place::Targeted(agent.clone()),
            (None, true) => Place::Ranked,
        }
    }

    fn index(&mut self, id: &ConversationId, key: &RankKey, place: &Place) {
        match place {
            Place::Ranked => {
                self.ranked.insert((*key, id.clone()), id.clone());
            }
            Place::Targeted(agent) => {
                self.targeted
                    .entry(agent.clone())
                    .or_default()
                    .insert((*key, id.clone()), id.clone());
            }
            Place::Waiting | Place::InFlight(_) => {}
        }
    }

    fn unindex(&mut self, id: &ConversationId) {
        let Some(slot) = self.slots.get(id) else { return };
        match &slot.place {
            Place::Ranked => {
                self.ranked.remove(&(slot.entry.key, id.clone()));
            }
            Place::Targeted(agent) => {
                if let Some(set) = self.targeted.get_mut(agent) {
                    set.remove(&(slot.entry.key, id.clone()));
                    if set.is_empty() {
                        self.targeted.remove(agent);
                    }
                }
            }
            Place::Waiting | Place::InFlight(_) => {}
        }
    }

    /// The tier of an agent of `group`: its group's place in the skill's list, after
    /// every listed group when not listed (or of no group); 0 without group routing.
    fn tier_of(&self, group: Option<&GroupId>) -> usize {
        let Some(routing) = &self.groups else { return 0 };
        let listed = routing.groups();
        group
            .and_then(|g| listed.iter().position(|l| *l == g))
            .unwrap_or(listed.len())
    }

    fn unindex_agent(&mut self, agent: &AgentId, view: &KnownAgent) {
        let tier = self.tier_of(view.group.as_ref());
        if let (Some(k), Some(set)) = (view.index_key(agent, self.choice), self.by_room.get_mut(&tier)) {
            set.remove(&k);
            if set.is_empty() {
                self.by_room.remove(&tier);
            }
        }
    }

    fn put_view(&mut self, agent: &AgentId, view: KnownAgent) {
        if let Some(old) = self.agents.get(agent).cloned() {
            self.unindex_agent(agent, &old);
        }
        if let Some(k) = view.index_key(agent, self.choice) {
            let tier = self.tier_of(view.group.as_ref());
            self.by_room.entry(tier).or_default().insert(k);
        }
        self.agents.insert(agent.clone(), view);
    }

    /// Records what an agent says about its room (its group as known).
    pub fn set_agent(&mut self, agent: &AgentId, room: AgentRoom) {
        let group = self.agents.get(agent).and_then(|v| v.group.clone());
        self.set_agent_in_group(agent, room, group);
    }

    /// Records an agent's room and group.
    pub fn set_agent_in_group(&mut self, agent: &AgentId, room: AgentRoom, group: Option<GroupId>) {
        let last_offer = self.agents.get(agent).map_or(0, |v| v.last_offer);
        self.put_view(
            agent,
            KnownAgent {
                room,
                last_offer,
                group,
            },
        );
    }

    pub fn remove_agent(&mut self, agent: &AgentId) {
        if let Some(v) = self.agents.remove(agent) {
            self.unindex_agent(agent, &v);
        }
    }

    /// The skill's group routing (a no-op when unchanged): the agents are placed in
    /// their tiers again, and a new routing starts its split's tally afresh.
    pub fn set_groups(&mut self, groups: Option<&GroupRouting>) {
        if self.groups.as_ref() == groups {
            return;
        }
        let agents: Vec<(AgentId, KnownAgent)> = self.agents.drain().collect();
        self.by_room.clear();
        self.groups = groups.cloned();
        self.group_offers = vec![0; groups.map_or(0, |g| g.groups().len())];
        for (id, view) in agents {
            self.put_view(&id, view);
        }
    }

    /// The order in which tiers are tried: a cascade's in its order; a split's furthest
    /// below its share first (ties in list order); unlisted groups last.
    fn tier_order(&self) -> Vec<usize> {
        match &self.groups {
            None => vec![0],
            Some(GroupRouting::Cascade(list)) => (0..=list.len()).collect(),
            Some(GroupRouting::Split(shares)) => {
                let total: u64 = self.group_offers.iter().sum();
                let behind = |i: usize| {
                    let target = i128::from(shares[i].1) * i128::from(total + 1);
                    target - 100 * i128::from(self.group_offers.get(i).copied().unwrap_or(0))
                };
                let mut order: Vec<usize> = (0..shares.len()).collect();
                order.sort_by_key(|&i| std::cmp::Reverse(behind(i)));
                order.push(shares.len());
                order
            }
        }
    }

    /// Offers made to the agents of each listed group since the routing was set.
    pub fn group_offers(&self) -> Vec<(GroupId, u64)> {
        let Some(routing) = &self.groups else { return Vec::new() };
        routing
            .groups()
            .into_iter()
            .cloned()
            .zip(self.group_offers.iter().copied())
            .collect()
    }

    /// Lowers the view of an agent's room by an offer's weight until the agent answers.
    fn take_room(&mut self, agent: &AgentId, weight: Weight) {
        self.offer_seq += 1;
        let Some(view) = self.agents.get(agent).cloned() else {
            return;
        };
        let tier = self.tier_of(view.group.as_ref());
        if let Some(n) = self.group_offers.get_mut(tier) {
            *n += 1;
        }
        let room = AgentRoom {
            free: view.room.free.saturating_sub(weight),
            busy: view.room.busy + weight,
            ..view.room
        };
        self.put_view(
            agent,
            KnownAgent {
                room,
                last_offer: self.offer_seq,
                group: view.group,
            },
        );
    }

    fn fits(&self, agent: &AgentId, weight: Weight) -> bool {
        self.agents
            .get(agent)
            .is_some_and(|v| v.room.accepting && v.room.free >= weight)
    }

    /// Chooses the agent for an entry: the preferred agent if it has room, else the agent
    /// with the most room that is neither avoided nor declined, else the avoided agent.
    fn choose_agent(&self, slot: &Slot) -> Choice {
        let e = &slot.entry;
        let weight = e.weight;
        let usable = |a: &AgentId| self.fits(a, weight) && !slot.declined.contains(a);
        if let Some(p) = &e.hints.preferred_agent {
            if usable(p) {
                return Choice::Agent(p.clone());
            }
        }
        let mut any_fit = false;
        for tier in self.tier_order() {
            let Some(agents) = self.by_room.get(&tier) else {
                continue;
            };
            for (_, _, agent) in agents {
                let free = self.agents.get(agent).map_or(Weight::ZERO, |v| v.room.free);
                if free < weight {
                    match self.choice {
                        // Ordered by free room: nobody further in the tier fits either.
                        AgentChoice::MostFree => break,
                        AgentChoice::Utilization => continue,
                    }
                }
                any_fit = true;
                if slot.declined.contains(agent) || e.hints.avoid_agent.as_ref() == Some(agent) {
                    continue;
                }
                return Choice::Agent(agent.clone());
            }
        }
        if let Some(avoided) = &e.hints.avoid_agent {
            if usable(avoided) {
                return Choice::Agent(avoided.clone());
            }
        }
        if any_fit {
            Choice::AllDeclined
        } else {
            Choice::NoRoom
        }
    }

    /// Pairs waiting conversations with agents that have room, best first. Offered
    /// entries stay in the queue, in flight, until the conversation leaves or the offer
    /// comes back.
    pub fn match_offers(&mut self) -> Vec<Offer> {
        let mut offers = Vec::new();
        // Conversations transferred to a named agent: only that agent.
        let mut targeted_agents: Vec<AgentId> = self.targeted.keys().cloned().collect();
        targeted_agents.sort();
        for agent in targeted_agents {
            let waiting: Vec<ConversationId> = self
                .targeted
                .get(&agent)
                .map(|t| t.values().cloned().collect())
                .unwrap_or_default();
            for id in waiting {
                let Some(slot) = self.slots.get(&id) else { continue };
                if slot.declined.contains(&agent) {
                    // It waits for this agent alone; try again after the retry delay.
                    self.retry_wanted = true;
                    continue;
                }
                if !self.fits(&agent, slot.entry.weight) {
                    break;
                }
                offers.push(self.make_offer(&id, &agent));
            }
        }
        // Everyone else, in rank order.
        let mut cursor: Option<(RankKey, ConversationId)> = None;
        let mut passed_over = 0usize;
        while !self.by_room.is_empty() {
            let next = match &cursor {
                None => self.ranked.first_key_value(),
                Some(c) => self.ranked.range((Bound::Excluded(c), Bound::Unbounded)).next(),
            };
            let Some((key, id)) = next.map(|(k, v)| (k.clone(), v.clone())) else {
                break;
            };
            let Some(slot) = self.slots.get(&id) else { break };
            let slot_weight = slot.entry.weight;
            match self.choose_agent(slot) {
                Choice::Agent(agent) => offers.push(self.make_offer(&id, &agent)),
                // Nothing of this weight fits; lighter entries (a fallback queue mixes
                // skills) further down still might.
                Choice::NoRoom if slot_weight > self.lightest() && passed_over < 1024 => {
                    cursor = Some(key);
                    passed_over += 1;
                }
                Choice::NoRoom => break,
                Choice::AllDeclined => {
                    self.retry_wanted = true;
                    cursor = Some(key);
                    passed_over += 1;
                    if passed_over > 1024 {
                        break;
                    }
                }
            }
        }
        offers
    }

    fn make_offer(&mut self, id: &ConversationId, agent: &AgentId) -> Offer {
        self.unindex(id);
        let (epoch, weight) = match self.slots.get_mut(id) {
            Some(slot) => {
                slot.place = Place::InFlight(agent.clone());
                slot.unanswered = false;
                (slot.entry.epoch, slot.entry.weight)
            }
            None => (0, Weight::ZERO),
        };
        self.take_room(agent, weight);
        Offer {
            conversation_id: id.clone(),
            epoch,
            agent_id: agent.clone(),
            weight,
        }
    }

    /// An offer came back. The entry takes its place in the ranking again (its key never
    /// changed), and the agent's room is updated when the agent sent it.
    pub fn offer_declined(
        &mut self,
        id: &ConversationId,
        epoch: u64,
        agent: &AgentId,
        reason: Declined,
        room: Option<AgentRoom>,
    ) {
        // An agent this queue has forgotten (it left the skill) is not brought back.
        if let (Some(room), true) = (room, self.agents.contains_key(agent)) {
            self.set_agent(agent, room);
        }
        let Some(slot) = self.slots.get_mut(id) else { return };
        if slot.entry.epoch != epoch || slot.place != Place::InFlight(agent.clone()) {
            return;
        }
        if reason == Declined::Stale {
            // The conversation moved on; its own update or removal follows.
            self.remove(id);
            return;
        }
        if reason == Declined::Rejected && !slot.declined.contains(agent) {
            slot.declined.push(agent.clone());
        }
        slot.place = Self::place_for(&slot.entry);
        let (key, place) = (slot.entry.key, slot.place.clone());
        self.index(id, &key, &place);
    }

    /// The weight of the lightest entry (entries of one skill all weigh the same).
    fn lightest(&self) -> Weight {
        self.weights.keys().next().copied().unwrap_or(Weight::ZERO)
    }

    /// The agent's actor restarted: offers in flight to it were lost with its mailbox,
    /// except those it still holds (`kept`). The others take their places again.
    pub fn agent_restarted(&mut self, agent: &AgentId, kept: &[ConversationId]) {
        let lost: Vec<ConversationId> = self
            .slots
            .iter()
            .filter(|(id, s)| s.place == Place::InFlight(agent.clone()) && !kept.contains(id))
            .map(|(id, _)| id.clone())
            .collect();
        self.reclaim(lost);
    }

    /// The agent (alive) says which offers of this queue it holds (`kept`). An offer in
    /// flight to it that it does not hold may still be on its way: only one it did not
    /// hold at its previous word too is taken back as lost (a cluster's periodic repair
    /// of offers lost between nodes).
    pub fn offers_held(&mut self, agent: &AgentId, kept: &[ConversationId]) {
        let mut lost = Vec::new();
        for (id, slot) in self.slots.iter_mut() {
            if slot.place != Place::InFlight(agent.clone()) {
                continue;
            }
            if kept.contains(id) {
                slot.unanswered = false;
            } else if slot.unanswered {
                lost.push(id.clone());
            } else {
                slot.unanswered = true;
            }
        }
        self.reclaim(lost);
    }

    /// Offers in flight that were lost: their entries take their places again.
    fn reclaim(&mut self, mut lost: Vec<ConversationId>) {
        lost.sort();
        for id in lost {
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.place = Self::place_for(&slot.entry);
                let (key, place) = (slot.entry.key, slot.place.clone());
                self.index(&id, &key, &place);
            }
        }
    }

    /// Whether an entry was passed over because every agent with room declined it.
    pub fn take_retry_wanted(&mut self) -> bool {
        std::mem::take(&mut self.retry_wanted)
    }

    /// Forgets declines so that passed-over entries are offered again.
    pub fn forget_declines(&mut self) {
        for slot in self.slots.values_mut() {
            slot.declined.clear();
        }
    }

    /// Actionable entries of this skill that are not offered to anyone: the ones to
    /// send to the fallback skill when no agent of this skill is online.
    pub fn fallback_candidates(&self) -> Vec<(&ConversationId, u64)> {
        let mut v: Vec<(&RankKey, &ConversationId, u64)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.entry.actionable && !s.entry.in_fallback && s.entry.home_skill == self.skill)
            .filter(|(_, s)| !matches!(s.place, Place::InFlight(_)))
            .map(|(id, s)| (&s.entry.key, id, s.entry.epoch))
            .collect();
        // In rank order: the best-ranked reach the fallback queue first.
        v.sort();
        v.into_iter().map(|(_, id, epoch)| (id, epoch)).collect()
    }

    /// The conversation's own skill, for an entry of this queue.
    pub fn home_skill(&self, id: &ConversationId) -> Option<SkillId> {
        self.slots.get(id).map(|s| s.entry.home_skill.clone())
    }

    /// The queue's figures at `now`; `new_weight` is the weight of a conversation opened
    /// now (for its estimated wait).
    pub fn figures(&mut self, now: Timestamp, new_weight: Weight) -> QueueFigures {
        let mut f = QueueFigures {
            estimated_wait_secs: self.estimated_wait(now, new_weight).map(|d| d.as_secs()),
            ..QueueFigures::default()
        };
        let mut waits: Vec<Duration> = Vec::new();
        for slot in self.slots.values().filter(|s| s.entry.home_skill == self.skill) {
            f.unassigned += 1;
            f.first_time_unassigned += usize::from(slot.entry.first_time);
            if slot.entry.actionable {
                f.actionable += 1;
                *match slot.entry.because {
                    Because::ConsumerWroteLast => &mut f.actionable_consumer_wrote_last,
                    Because::FollowUpDue => &mut f.actionable_follow_up_due,
                    Because::Transferred => &mut f.actionable_transferred,
                    Because::Returned => &mut f.actionable_returned,
                } += 1;
                waits.push(now.since(slot.entry.queued_at));
                if slot.entry.overdue {
                    f.overdue_unassigned += 1;
                }
            } else {
                f.not_actionable += 1;
            }
            if matches!(slot.place, Place::InFlight(_)) {
                f.offered += 1;
            }
        }
        for view in self.agents.values().filter(|v| v.room.online) {
            f.online_agents += 1;
            if view.room.accepting {
                f.available_slots += view.room.free.as_slots();
            }
        }
        waits.sort_unstable();
        let pct = |p: f64| -> u64 {
            if waits.is_empty() {
                return 0;
            }
            let i = ((waits.len() as f64 - 1.0) * p).round() as usize;
            waits[i.min(waits.len() - 1)].as_secs()
        };
        f.wait_p50_secs = pct(0.5);
        f.wait_p90_secs = pct(0.9);
        f.max_wait_secs = waits.last().map_or(0, Duration::as_secs);
        f
    }

    /// The queue in offer order: actionable entries by rank, then those waiting for the
    /// consumer by time in queue.
    pub fn rows(&self, limit: usize) -> Vec<QueueRow> {
        let mut actionable: Vec<&Slot> = self.slots.values().filter(|s| s.place != Place::Waiting).collect();
        actionable.sort_by_key(|s| s.entry.key);
        let mut waiting: Vec<&Slot> = self.slots.values().filter(|s| s.place == Place::Waiting).collect();
        waiting.sort_by_key(|s| (s.entry.queued_at, s.entry.key.seq));
        actionable
            .into_iter()
            .chain(waiting)
            .take(limit)
            .map(|s| QueueRow {
                conversation_id: s.entry.conversation_id.clone(),
                actionable: s.entry.actionable,
                place: match s.place {
                    Place::Ranked => "ranked",
                    Place::Targeted(_) => "reserved_for_agent",
                    Place::Waiting => "waiting_for_consumer",
                    Place::InFlight(_) => "offered",
                }
                .to_string(),
                offered_to: match &s.place {
                    Place::InFlight(a) => Some(a.clone()),
                    _ => None,
                },
                queued_at: s.entry.queued_at,
                due_at: s.entry.due_at,
                overdue: s.entry.overdue,
                priority: s.entry.priority,
                fallback_from: (s.entry.home_skill != self.skill).then(|| s.entry.home_skill.clone()),
            })
            .collect()
    }
}

enum Choice {
    Agent(AgentId),
    /// No agent has room for this weight: nothing further down will fit either.
    NoRoom,
    /// Agents with room exist, but each declined this entry already.
    AllDeclined,
}

#[cfg(test)]
mod tests;
