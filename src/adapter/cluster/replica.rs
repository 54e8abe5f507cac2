//! Every node's copy of the cluster's presence: for each app and presence
//! channel, each user and the set of nodes where that user has at least one
//! connection.
//!
//! Nodes change it only through deltas ("node N gained/lost user U on C")
//! that travel through one Redis pub/sub channel. Redis delivers them in
//! one order to everyone, so every node reaches the same verdict on "first
//! connection anywhere" and "last connection anywhere" without a lock or a
//! round trip. Deltas are idempotent (set insert/remove), which makes
//! replaying a snapshot and then the deltas that overlap it harmless.

use std::collections::HashMap;

use crate::core::event::Member;

type UserMap = HashMap<Box<str>, (Member, Vec<Box<str>>)>;

/// (app id, channel) → users.
#[derive(Default, Debug)]
pub struct Replica {
    channels: HashMap<(Box<str>, Box<str>), UserMap>,
}

/// A presence change the local subscribers must hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added {
        app: Box<str>,
        channel: Box<str>,
        member: Member,
    },
    Removed {
        app: Box<str>,
        channel: Box<str>,
        member: Member,
    },
}

impl Replica {
    /// `node` gained `member` on the channel. True when the user was not
    /// present anywhere before (a `member_added`).
    pub fn join(&mut self, app: &str, channel: &str, node: &str, member: Member) -> bool {
        let users = self
            .channels
            .entry((app.into(), channel.into()))
            .or_default();
        let entry = users
            .entry(member.key.clone())
            .or_insert_with(|| (member, Vec::new()));
        if entry.1.iter().any(|n| &**n == node) {
            return false;
        }
        entry.1.push(node.into());
        entry.1.len() == 1
    }

    /// `node` lost the user. The member when it was the last node (a
    /// `member_removed`).
    pub fn leave(&mut self, app: &str, channel: &str, node: &str, user: &str) -> Option<Member> {
        let key = (Box::<str>::from(app), Box::<str>::from(channel));
        let users = self.channels.get_mut(&key)?;
        let entry = users.get_mut(user)?;
        let before = entry.1.len();
        entry.1.retain(|n| &**n != node);
        if entry.1.is_empty() && before > 0 {
            let (member, _) = users.remove(user)?;
            if users.is_empty() {
                self.channels.remove(&key);
            }
            return Some(member);
        }
        None
    }

    /// Forgets every membership of `node` (it died or is being resynced).
    pub fn drop_node(&mut self, node: &str) -> Vec<Change> {
        let mut changes = Vec::new();
        for ((app, channel), users) in self.channels.iter_mut() {
            users.retain(|_, (member, nodes)| {
                let had = nodes.iter().any(|n| &**n == node);
                nodes.retain(|n| &**n != node);
                if had && nodes.is_empty() {
                    changes.push(Change::Removed {
                        app: app.clone(),
                        channel: channel.clone(),
                        member: member.clone(),
                    });
                    return false;
                }
                true
            });
        }
        self.channels.retain(|_, users| !users.is_empty());
        changes
    }

    /// Replaces what is known of `node` with `entries` (a snapshot read
    /// from Redis) and returns the visible differences.
    pub fn replace_node(
        &mut self,
        node: &str,
        entries: Vec<(String, String, Member)>,
    ) -> Vec<Change> {
        let before: Vec<(Box<str>, Box<str>, Box<str>)> = self.memberships_of(node);
        let mut changes = Vec::new();
        let keep: std::collections::HashSet<(String, String, String)> = entries
            .iter()
            .map(|(a, c, m)| (a.clone(), c.clone(), m.key.to_string()))
            .collect();
        for (app, channel, user) in before {
            if !keep.contains(&(app.to_string(), channel.to_string(), user.to_string()))
                && let Some(member) = self.leave(&app, &channel, node, &user)
            {
                changes.push(Change::Removed {
                    app,
                    channel,
                    member,
                });
            }
        }
        for (app, channel, member) in entries {
            if self.join(&app, &channel, node, member.clone()) {
                changes.push(Change::Added {
                    app: app.into(),
                    channel: channel.into(),
                    member,
                });
            }
        }
        changes
    }

    fn memberships_of(&self, node: &str) -> Vec<(Box<str>, Box<str>, Box<str>)> {
        let mut out = Vec::new();
        for ((app, channel), users) in &self.channels {
            for (user, (_, nodes)) in users {
                if nodes.iter().any(|n| &**n == node) {
                    out.push((app.clone(), channel.clone(), user.clone()));
                }
            }
        }
        out
    }

    /// Calls `f` with every node that holds at least one membership.
    pub fn for_each_node(&self, mut f: impl FnMut(&str)) {
        for users in self.channels.values() {
            for (_, nodes) in users.values() {
                nodes.iter().for_each(|n| f(n));
            }
        }
    }

    /// Whether `user` is present on the channel on some node.
    pub fn contains(&self, app: &str, channel: &str, user: &str) -> bool {
        self.channels
            .get(&(app.into(), channel.into()))
            .is_some_and(|users| users.contains_key(user))
    }

    /// Every member of a channel, cluster-wide.
    pub fn members(&self, app: &str, channel: &str) -> Vec<Member> {
        self.channels
            .get(&(app.into(), channel.into()))
            .map(|users| users.values().map(|(m, _)| m.clone()).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::RawJson;

    fn m(id: &str) -> Member {
        Member::new(RawJson::string(id), None)
    }

    #[test]
    fn first_and_last_connection_anywhere() {
        let mut r = Replica::default();
        assert!(
            r.join("1", "presence-a", "n1", m("u")),
            "first node: member_added"
        );
        assert!(
            !r.join("1", "presence-a", "n2", m("u")),
            "second node: no event"
        );
        assert!(
            !r.join("1", "presence-a", "n2", m("u")),
            "replayed delta: no event"
        );
        assert_eq!(r.members("1", "presence-a").len(), 1);
        assert_eq!(r.leave("1", "presence-a", "n1", "u"), None, "still on n2");
        assert_eq!(
            r.leave("1", "presence-a", "n2", "u").map(|m| m.key),
            Some("u".into())
        );
        assert_eq!(
            r.leave("1", "presence-a", "n2", "u"),
            None,
            "replayed leave: no event"
        );
        assert!(r.members("1", "presence-a").is_empty());
    }

    #[test]
    fn dead_node_leaves_no_ghost() {
        let mut r = Replica::default();
        r.join("1", "presence-a", "dead", m("ghost"));
        r.join("1", "presence-a", "dead", m("shared"));
        r.join("1", "presence-a", "alive", m("shared"));
        let changes = r.drop_node("dead");
        assert_eq!(changes.len(), 1);
        assert!(matches!(&changes[0], Change::Removed { member, .. } if &*member.key == "ghost"));
        assert_eq!(r.members("1", "presence-a").len(), 1);
    }

    #[test]
    fn snapshot_replacement_reports_differences() {
        let mut r = Replica::default();
        r.join("1", "presence-a", "n2", m("old"));
        let changes = r.replace_node("n2", vec![("1".into(), "presence-a".into(), m("new"))]);
        assert_eq!(changes.len(), 2);
        assert!(
            changes
                .iter()
                .any(|c| matches!(c, Change::Removed { member, .. } if &*member.key == "old"))
        );
        assert!(
            changes
                .iter()
                .any(|c| matches!(c, Change::Added { member, .. } if &*member.key == "new"))
        );
    }
}
