//! The registry: which sessions belong to which user, and every outgoing
//! event routed by user id (one user, many tabs). Started once per process.

use super::messages::*;
use super::newest::NewestCursor;
use crate::domain::Audience;
use crate::metrics::METRICS;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

struct SessionEntry {
    addr: Recipient<Push>,
    groups: Arc<[String]>,
    link: Arc<SessionLink>,
}

impl SessionEntry {
    /// Hands a frame to the session unless its queue is full; false when
    /// the session has overflowed and must be dropped.
    fn offer(&self, push: &Push, max_queued: usize) -> bool {
        let bytes = push.len();
        let queued = self.link.queued.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if queued > max_queued && bytes > 0 {
            self.link.queued.fetch_sub(bytes, Ordering::AcqRel);
            self.link.overflowed.store(true, Ordering::Release);
            return false;
        }
        self.addr.do_send(push.clone());
        true
    }
}

#[derive(Default)]
pub struct Registry {
    users: HashMap<Arc<str>, HashMap<SessionId, SessionEntry>>,
    /// group → users online in it, with how many of their sessions carry it.
    groups: HashMap<String, HashMap<Arc<str>, usize>>,
    sessions: usize,
    max_sessions_per_user: usize,
    max_queued_bytes: usize,
    /// Advanced by every `Publish` before it is routed (see `newest`).
    newest: NewestCursor,
}

impl Registry {
    pub fn new(max_sessions_per_user: usize, max_queued_bytes: usize) -> Registry {
        Registry {
            max_sessions_per_user: max_sessions_per_user.max(1),
            max_queued_bytes: max_queued_bytes.max(1),
            ..Registry::default()
        }
    }

    /// The registry keeps `newest` up to date with what it routes.
    pub fn with_newest(mut self, newest: NewestCursor) -> Registry {
        self.newest = newest;
        self
    }

    fn push_to_user(&mut self, user_id: &str, push: &Push, except: Option<SessionId>) {
        let mut stalled = Vec::new();
        if let Some(sessions) = self.users.get(user_id) {
            for (id, entry) in sessions {
                if Some(*id) != except && !entry.offer(push, self.max_queued_bytes) {
                    stalled.push(*id);
                }
            }
        }
        for id in stalled {
            self.drop_stalled(user_id, id);
        }
    }

    /// Stops routing to a session whose client stopped reading. The session
    /// closes itself (4029) the next time it runs; its client resumes by cursor.
    fn drop_stalled(&mut self, user_id: &str, session_id: SessionId) {
        tracing::warn!(
            user_id,
            session_id,
            max_queued_bytes = self.max_queued_bytes,
            "dropping slow session: outgoing queue full"
        );
        METRICS.slow_consumers.inc();
        self.remove(user_id, session_id);
    }

    fn remove(&mut self, user_id: &str, session_id: SessionId) {
        let Some(sessions) = self.users.get_mut(user_id) else {
            return;
        };
        let Some(entry) = sessions.remove(&session_id) else {
            return;
        };
        self.sessions -= 1;
        if sessions.is_empty() {
            self.users.remove(user_id);
        }
        self.leave_groups(user_id, &entry.groups);
        self.update_gauges();
    }

    fn join_groups(&mut self, user_id: &Arc<str>, groups: &[String]) {
        for group in groups {
            *self
                .groups
                .entry(group.clone())
                .or_default()
                .entry(user_id.clone())
                .or_default() += 1;
        }
    }

    fn leave_groups(&mut self, user_id: &str, groups: &[String]) {
        for group in groups {
            if let Some(members) = self.groups.get_mut(group) {
                if let Some(count) = members.get_mut(user_id) {
                    *count -= 1;
                    if *count == 0 {
                        members.remove(user_id);
                    }
                }
                if members.is_empty() {
                    self.groups.remove(group);
                }
            }
        }
    }

    fn update_gauges(&self) {
        METRICS.sessions.set(self.sessions as i64);
        METRICS.users_online.set(self.users.len() as i64);
    }

    /// Calls `f` once per online user in the audience; returns how many.
    fn for_each_user(&self, audience: &Audience, mut f: impl FnMut(&str)) -> usize {
        match audience {
            Audience::All => {
                self.users.keys().for_each(|u| f(u));
                self.users.len()
            }
            Audience::Users(users) => users
                .iter()
                .filter(|u| self.users.contains_key(u.as_str()))
                .inspect(|u| f(u))
                .count(),
            Audience::Groups(groups) => {
                let mut seen: Vec<&Arc<str>> = groups
                    .iter()
                    .filter_map(|g| self.groups.get(g))
                    .flat_map(|members| members.keys())
                    .collect();
                seen.sort();
                seen.dedup();
                seen.iter().for_each(|u| f(u));
                seen.len()
            }
        }
    }

    /// Sends to the sessions in the audience. A user's sessions may carry
    /// different groups (tokens minted at different times), so group
    /// audiences are checked per session.
    fn push_to_audience(&mut self, audience: &Audience, push: &Push) -> usize {
        let mut stalled: Vec<(Arc<str>, SessionId)> = Vec::new();
        let reached = self.for_each_user(audience, |user| {
            if let Some((user_id, sessions)) = self.users.get_key_value(user) {
                for (id, entry) in sessions {
                    if audience.includes(user, &entry.groups)
                        && !entry.offer(push, self.max_queued_bytes)
                    {
                        stalled.push((user_id.clone(), *id));
                    }
                }
            }
        });
        for (user_id, id) in stalled {
            self.drop_stalled(&user_id, id);
        }
        reached
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Fan-out to tens of thousands of sessions is a burst of messages;
        // the registry's own mailbox should never be what pushes back.
        ctx.set_mailbox_capacity(1 << 20);
    }
}

impl Handler<Connect> for Registry {
    type Result = bool;

    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) -> bool {
        let open = self.users.get(&msg.user_id).map_or(0, HashMap::len);
        if open >= self.max_sessions_per_user {
            return false;
        }
        self.join_groups(&msg.user_id, &msg.groups);
        let sessions = self.users.entry(msg.user_id.clone()).or_default();
        sessions.insert(
            msg.session_id,
            SessionEntry {
                addr: msg.addr,
                groups: msg.groups,
                link: msg.link,
            },
        );
        self.sessions += 1;
        self.update_gauges();
        true
    }
}

impl Handler<Regroup> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Regroup, _: &mut Context<Self>) {
        let Some(entry) = self
            .users
            .get_mut(&msg.user_id)
            .and_then(|sessions| sessions.get_mut(&msg.session_id))
        else {
            return;
        };
        let old = std::mem::replace(&mut entry.groups, msg.groups.clone());
        self.leave_groups(&msg.user_id, &old);
        self.join_groups(&msg.user_id, &msg.groups);
    }
}

impl Handler<Disconnect> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        self.remove(&msg.user_id, msg.session_id);
    }
}

impl Handler<Publish> for Registry {
    type Result = usize;

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) -> usize {
        self.newest.advance(msg.announcement.cursor);
        self.push_to_audience(&msg.audience, &Push::Announcement(msg.announcement))
    }
}

impl Handler<Retract> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Retract, _: &mut Context<Self>) {
        let frame = Push::Frame(crate::protocol::retract(msg.id).into());
        self.push_to_audience(&msg.audience, &frame);
    }
}

impl Handler<ReadSync> for Registry {
    type Result = ();

    fn handle(&mut self, msg: ReadSync, _: &mut Context<Self>) {
        let frame = Push::Frame(crate::protocol::read(&msg.ids, &msg.confirmed).into());
        self.push_to_user(&msg.user_id, &frame, msg.except);
    }
}

impl Handler<ArchiveSync> for Registry {
    type Result = ();

    fn handle(&mut self, msg: ArchiveSync, _: &mut Context<Self>) {
        let frame = Push::Frame(crate::protocol::archive(&msg.ids, msg.archived).into());
        self.push_to_user(&msg.user_id, &frame, msg.except);
    }
}

impl Handler<CloseAll> for Registry {
    type Result = usize;

    fn handle(&mut self, msg: CloseAll, _: &mut Context<Self>) -> usize {
        let push = Push::Close(msg.code, msg.reason);
        for sessions in self.users.values() {
            for entry in sessions.values() {
                entry.addr.do_send(push.clone());
            }
        }
        self.sessions
    }
}

impl Handler<GetPresence> for Registry {
    type Result = MessageResult<GetPresence>;

    fn handle(&mut self, _: GetPresence, _: &mut Context<Self>) -> Self::Result {
        let mut users: Vec<UserPresence> = self
            .users
            .iter()
            .map(|(user_id, sessions)| UserPresence {
                user_id: user_id.to_string(),
                sessions: sessions.len(),
            })
            .collect();
        users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        MessageResult(PresenceSnapshot {
            total_users: users.len(),
            total_sessions: self.sessions,
            users,
        })
    }
}

impl Handler<GetUserSessions> for Registry {
    type Result = usize;

    fn handle(&mut self, msg: GetUserSessions, _: &mut Context<Self>) -> usize {
        self.users.get(msg.0.as_str()).map_or(0, HashMap::len)
    }
}
