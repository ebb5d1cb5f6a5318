//! The registry: which sessions belong to which user, and every outgoing
//! event routed by user id (one user, many tabs). Started once per process.

use super::messages::*;
use crate::domain::Audience;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

struct SessionEntry {
    addr: Recipient<Push>,
    groups: Arc<[String]>,
}

#[derive(Default)]
pub struct Registry {
    users: HashMap<Arc<str>, HashMap<SessionId, SessionEntry>>,
    /// group → users online in it, with how many of their sessions carry it.
    groups: HashMap<String, HashMap<Arc<str>, usize>>,
    sessions: usize,
    max_sessions_per_user: usize,
}

impl Registry {
    pub fn new(max_sessions_per_user: usize) -> Registry {
        Registry {
            max_sessions_per_user: max_sessions_per_user.max(1),
            ..Registry::default()
        }
    }

    fn push_to_user(&self, user_id: &str, push: &Push, except: Option<SessionId>) -> bool {
        let Some(sessions) = self.users.get(user_id) else {
            return false;
        };
        for (id, entry) in sessions {
            if Some(*id) != except {
                entry.addr.do_send(push.clone());
            }
        }
        true
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
    fn push_to_audience(&self, audience: &Audience, push: &Push) -> usize {
        self.for_each_user(audience, |user| {
            if let Some(sessions) = self.users.get(user) {
                for entry in sessions.values() {
                    if audience.includes(user, &entry.groups) {
                        entry.addr.do_send(push.clone());
                    }
                }
            }
        })
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
        let sessions = self.users.entry(msg.user_id.clone()).or_default();
        if sessions.len() >= self.max_sessions_per_user {
            return false;
        }
        for group in msg.groups.iter() {
            *self
                .groups
                .entry(group.clone())
                .or_default()
                .entry(msg.user_id.clone())
                .or_default() += 1;
        }
        sessions.insert(
            msg.session_id,
            SessionEntry {
                addr: msg.addr,
                groups: msg.groups,
            },
        );
        self.sessions += 1;
        true
    }
}

impl Handler<Disconnect> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        let Some(sessions) = self.users.get_mut(&msg.user_id) else {
            return;
        };
        let Some(entry) = sessions.remove(&msg.session_id) else {
            return;
        };
        self.sessions -= 1;
        if sessions.is_empty() {
            self.users.remove(&msg.user_id);
        }
        for group in entry.groups.iter() {
            if let Some(members) = self.groups.get_mut(group) {
                if let Some(count) = members.get_mut(&msg.user_id) {
                    *count -= 1;
                    if *count == 0 {
                        members.remove(&msg.user_id);
                    }
                }
                if members.is_empty() {
                    self.groups.remove(group);
                }
            }
        }
    }
}

impl Handler<Publish> for Registry {
    type Result = usize;

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) -> usize {
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
        let frame = Push::Frame(crate::protocol::read(&msg.ids).into());
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
