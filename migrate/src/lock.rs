//! One operator at a time per listener, with tags on the listener.
//!
//! Each contender writes its own tag `ficus:lock:<id>` =
//! `<holder> since <time> until <time>` (AddTags), then reads the listener's
//! tags back (DescribeTags, together with the rules' tags). The live lock with
//! the earliest `since` wins; the loser removes its tag and waits (`--wait`)
//! or fails with exit 4 naming the holder. A lock is dead when expired, or
//! when its holder is a process of this host that no longer exists (a SIGKILLed
//! `migrate`): dead locks are ignored and cleaned up on release.
//!
//! The lock fences every write: before each SetRulePriorities, ModifyRule or
//! AddTags of a shift or rollback, [`Lock::confirm`] reads the listener's tags
//! (one DescribeTags) and stops with exit 4 if our tag is gone (a colleague's
//! `--force-unlock`) or another holder now wins. The one exception is the
//! AddTags that journals a write on its rule (the last-change tag) right
//! after it: the write's own confirmation, if it began less than
//! [`CONFIRMATION_COVERS`] ago, covers it ([`Lock::confirm_unless_recent`]).
//! The first confirmation also waits until `settle` has passed since our tag
//! was written: AWS documents no read-after-write consistency for tags, so a
//! contender whose tag we could not see yet at acquisition is seen then,
//! before anything is written. The time spent waiting is counted
//! ([`settle_waited`]) for `-v`'s summary.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::elb::{Elb, operator_name};
use crate::error::Failure;
pub use crate::journal::rfc3339;
use crate::journal::tag_safe;

pub const LOCK_TAG_PREFIX: &str = "ficus:lock:";

/// A lock tag, parsed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LockTag {
    pub key: String,
    pub holder: String,
    #[serde(serialize_with = "serialize_time")]
    pub since: OffsetDateTime,
    #[serde(serialize_with = "serialize_time")]
    pub until: OffsetDateTime,
}

impl LockTag {
    /// The tag value. Times carry milliseconds: two operators starting within
    /// the same second must still be ordered.
    pub fn value(&self) -> String {
        format!(
            "{} since {} until {}",
            self.holder,
            rfc3339_millis(self.since),
            rfc3339_millis(self.until)
        )
    }

    pub fn parse(key: &str, value: &str) -> Option<LockTag> {
        let (holder, rest) = value.split_once(" since ")?;
        let (since, until) = rest.split_once(" until ")?;
        Some(LockTag {
            key: key.to_owned(),
            holder: holder.to_owned(),
            since: OffsetDateTime::parse(since, &Rfc3339).ok()?,
            until: OffsetDateTime::parse(until, &Rfc3339).ok()?,
        })
    }

    /// Expired, or held by a process of this host that is gone.
    pub fn is_dead(&self, now: OffsetDateTime) -> bool {
        if self.until <= now {
            return true;
        }
        let local_prefix = format!("{} pid ", tag_safe(&operator_name()));
        match self
            .holder
            .strip_prefix(&local_prefix)
            .and_then(|pid| pid.parse::<i32>().ok())
        {
            Some(pid) => !process_exists(pid),
            None => false,
        }
    }
}

/// The lock tags among a listener's tags (unparseable ones are shown as held
/// by their raw value, forever: a human must look).
pub fn lock_tags(tags: &BTreeMap<String, String>) -> Vec<LockTag> {
    tags.iter()
        .filter(|(key, _)| key.starts_with(LOCK_TAG_PREFIX))
        .map(|(key, value)| {
            LockTag::parse(key, value).unwrap_or(LockTag {
                key: key.clone(),
                holder: value.clone(),
                since: OffsetDateTime::UNIX_EPOCH,
                until: OffsetDateTime::now_utc() + Duration::from_secs(3600),
            })
        })
        .collect()
}

/// The live holder, if any (earliest `since`, then key).
pub fn holder(tags: &BTreeMap<String, String>, now: OffsetDateTime) -> Option<LockTag> {
    holder_among(&lock_tags(tags), now)
}

/// How recent a confirmation must be to cover the AddTags that journals the
/// write it fenced (see the module doc). Longer gaps (a rollback that watched
/// its reach in the traffic, after-rollback hooks, retries of a throttled
/// write) confirm again.
pub const CONFIRMATION_COVERS: Duration = Duration::from_secs(1);

/// Time this process spent waiting for its lock tag to settle (one command
/// runs per process, so the count is process-wide, as `budget`'s).
static SETTLE_WAITED: Mutex<Duration> = Mutex::new(Duration::ZERO);

/// How long this process waited, so far, for its lock tag to settle before
/// a write (the part of a shift's wall time that is AWS's consistency, not
/// `migrate`'s work).
pub fn settle_waited() -> Duration {
    SETTLE_WAITED
        .lock()
        .map_or(Duration::ZERO, |waited| *waited)
}

/// How long a contender that lost waits before trying again. Each try is
/// three calls (AddTags, DescribeTags, RemoveTags): at 2 s that is 1.5 calls
/// per second per waiting operator, well under ELBv2's shared account limits.
const LOCK_RETRY: Duration = Duration::from_secs(2);

/// A held lock. Release it with [`Lock::release`].
pub struct Lock {
    pub listener_arn: String,
    pub tag: LockTag,
    ttl: Duration,
    /// Dead lock tags seen while acquiring, removed on release.
    stale: Vec<String>,
    /// When our tag was last written.
    written: Instant,
    /// How long after `written` the tags are read again before the first write.
    settle: Duration,
    /// Lock tags of others removed by `--force-unlock`: a read that still
    /// shows one (tags are eventually consistent) does not take the lock back.
    forced: Vec<String>,
    /// Who held the locks that `--force-unlock` removed, and since when.
    forced_holders: Vec<String>,
    /// When the last confirmation that found the lock ours began.
    confirmed: Mutex<Option<Instant>>,
    /// How long acquiring waited for another operator's lock (`--wait`).
    pub waited: Duration,
}

/// How to acquire.
pub struct LockOptions {
    pub ttl: Duration,
    pub wait: Duration,
    pub force_unlock: bool,
    /// How long tags may take to read back as written (see the module doc).
    pub settle: Duration,
}

/// Acquires the listener's lock. Returns the lock and the tags of every ARN in
/// `also_describe` (read in the same DescribeTags call as the lock check).
pub async fn acquire(
    elb: &Elb,
    listener_arn: &str,
    also_describe: &[String],
    options: &LockOptions,
) -> anyhow::Result<(Lock, BTreeMap<String, BTreeMap<String, String>>)> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let key = format!("{LOCK_TAG_PREFIX}{}", &id[..12]);
    let holder = this_process();
    let deadline = tokio::time::Instant::now() + options.wait;
    let mut arns = vec![listener_arn.to_owned()];
    arns.extend(also_describe.iter().cloned());
    let began = Instant::now();
    // Whether the wait for another's lock was said (once, on stderr).
    let mut waiting = false;
    loop {
        let attempt = Attempt::make(elb, listener_arn, &arns, &key, &holder, options.ttl).await?;
        if options.force_unlock {
            return attempt.take_by_force(elb, options).await;
        }
        match holder_among(&attempt.all, OffsetDateTime::now_utc()) {
            Some(winner) if winner.key != key => {
                elb.remove_tags(listener_arn, std::slice::from_ref(&key))
                    .await?;
                if tokio::time::Instant::now() >= deadline {
                    return Err(Failure::LockHeld {
                        holder: winner.holder,
                        since: rfc3339(winner.since),
                    }
                    .into());
                }
                if !waiting {
                    waiting = true;
                    say_waiting(&winner, deadline);
                }
                tokio::time::sleep(LOCK_RETRY).await;
            }
            _ => {
                let waited = if waiting {
                    began.elapsed()
                } else {
                    Duration::ZERO
                };
                return Ok(attempt.take(options, waited));
            }
        }
    }
}

/// One try at the lock: our tag written, then the tags read back.
struct Attempt {
    listener_arn: String,
    tag: LockTag,
    /// When our tag was written.
    written: Instant,
    /// The tags of the listener and of the ARNs also described.
    tags: BTreeMap<String, BTreeMap<String, String>>,
    /// Every lock tag on the listener, ours among them.
    all: Vec<LockTag>,
}

impl Attempt {
    /// Writes our tag on the listener, valid for `ttl`, and reads back the
    /// tags of `arns`, the listener's among them (one AddTags, one
    /// DescribeTags).
    async fn make(
        elb: &Elb,
        listener_arn: &str,
        arns: &[String],
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> anyhow::Result<Attempt> {
        let now = OffsetDateTime::now_utc();
        let tag = LockTag {
            key: key.to_owned(),
            holder: holder.to_owned(),
            since: now,
            until: now + ttl,
        };
        elb.add_tags(listener_arn, &[(&tag.key, &tag.value())])
            .await?;
        let written = Instant::now();
        let tags = elb.tags(arns).await?;
        let all = lock_tags(&tags.get(listener_arn).cloned().unwrap_or_default());
        Ok(Attempt {
            listener_arn: listener_arn.to_owned(),
            tag,
            written,
            tags,
            all,
        })
    }

    /// The other operators' lock tags.
    fn others(&self) -> impl Iterator<Item = &LockTag> {
        self.all.iter().filter(|l| l.key != self.tag.key)
    }

    /// `--force-unlock`: removes every other lock tag (said on stderr, one
    /// RemoveTags) and takes the lock.
    async fn take_by_force(
        self,
        elb: &Elb,
        options: &LockOptions,
    ) -> anyhow::Result<(Lock, BTreeMap<String, BTreeMap<String, String>>)> {
        let others: Vec<String> = self.others().map(|l| l.key.clone()).collect();
        if !others.is_empty() {
            for other in self.others() {
                eprintln!(
                    "migrate: removing the lock of {} (since {})",
                    other.holder,
                    rfc3339(other.since)
                );
            }
            elb.remove_tags(&self.listener_arn, &others).await?;
        }
        let forced_holders = self
            .others()
            .map(|l| format!("{} (since {})", l.holder, rfc3339(l.since)))
            .collect();
        let (mut lock, tags) = self.into_lock(options, Vec::new());
        lock.forced = others;
        lock.forced_holders = forced_holders;
        Ok((lock, tags))
    }

    /// The lock won, after waiting `waited` for another's (said on stderr
    /// when not zero); dead lock tags seen now are removed on release.
    fn take(
        self,
        options: &LockOptions,
        waited: Duration,
    ) -> (Lock, BTreeMap<String, BTreeMap<String, String>>) {
        let now = OffsetDateTime::now_utc();
        let stale = self
            .others()
            .filter(|l| l.is_dead(now))
            .map(|l| l.key.clone())
            .collect();
        let (mut lock, tags) = self.into_lock(options, stale);
        lock.waited = waited;
        if !waited.is_zero() {
            eprintln!(
                "migrate: got the lock after waiting {:.1} s",
                waited.as_secs_f64()
            );
        }
        (lock, tags)
    }

    fn into_lock(
        self,
        options: &LockOptions,
        stale: Vec<String>,
    ) -> (Lock, BTreeMap<String, BTreeMap<String, String>>) {
        let lock = Lock {
            listener_arn: self.listener_arn,
            tag: self.tag,
            ttl: options.ttl,
            stale,
            written: self.written,
            settle: options.settle,
            forced: Vec::new(),
            forced_holders: Vec::new(),
            confirmed: Mutex::new(None),
            waited: Duration::ZERO,
        };
        (lock, self.tags)
    }
}

/// Says once, on stderr, who holds the lock and how long `--wait` waits.
fn say_waiting(winner: &LockTag, deadline: Instant) {
    eprintln!(
        "migrate: the lock is held by {} since {}; waiting for it (--wait, up to {} more; trying every {} s)",
        winner.holder,
        rfc3339(winner.since),
        humantime::format_duration(Duration::from_secs(
            deadline.saturating_duration_since(Instant::now()).as_secs()
        )),
        LOCK_RETRY.as_secs()
    );
}

fn holder_among(all: &[LockTag], now: OffsetDateTime) -> Option<LockTag> {
    let mut live: Vec<&LockTag> = all.iter().filter(|l| !l.is_dead(now)).collect();
    live.sort_by(|a, b| (a.since, &a.key).cmp(&(b.since, &b.key)));
    live.first().map(|l| (*l).clone())
}

impl Lock {
    /// Confirms, with one DescribeTags of the listener, that we still hold the
    /// lock: our tag is there and no other live lock wins. Call it before
    /// every write. Waits first until `settle` has passed since our tag was
    /// written. Exit 4 ([`Failure::LockLost`]) when the lock is no longer ours.
    pub async fn confirm(&self, elb: &Elb) -> anyhow::Result<()> {
        let settled = self.written + self.settle;
        let now = Instant::now();
        if settled > now {
            if let Ok(mut waited) = SETTLE_WAITED.lock() {
                *waited += settled - now;
            }
            tokio::time::sleep_until(settled).await;
        }
        let began = Instant::now();
        let arns = [self.listener_arn.clone()];
        let tags = elb.tags(&arns).await?;
        let listener_tags = tags.get(&self.listener_arn).cloned().unwrap_or_default();
        let now = OffsetDateTime::now_utc();
        let ours = listener_tags.contains_key(&self.tag.key);
        let contenders: Vec<LockTag> = lock_tags(&listener_tags)
            .into_iter()
            .filter(|l| !self.forced.contains(&l.key))
            .collect();
        let winner = holder_among(&contenders, now);
        let still_ours = match &winner {
            Some(winner) => ours && winner.key == self.tag.key,
            None => ours,
        };
        if still_ours {
            self.confirmed_at(began);
            return Ok(());
        }
        match winner {
            Some(winner) => Err(Failure::LockLost {
                now: format!(
                    "it is now held by {} since {}",
                    winner.holder,
                    rfc3339(winner.since)
                ),
            }
            .into()),
            None => Err(Failure::LockLost {
                now: "our lock tag was removed (a `--force-unlock`?) and nobody holds it now"
                    .to_owned(),
            }
            .into()),
        }
    }

    fn confirmed_at(&self, began: Instant) {
        if let Ok(mut confirmed) = self.confirmed.lock() {
            *confirmed = Some(began);
        }
    }

    /// [`Lock::confirm`], unless a confirmation began less than
    /// [`CONFIRMATION_COVERS`] ago. Only for the AddTags that journals a
    /// write on its rule, right after the write: that confirmation fenced the
    /// write, and the tag records what it did.
    pub async fn confirm_unless_recent(&self, elb: &Elb) -> anyhow::Result<()> {
        let recent = self
            .confirmed
            .lock()
            .ok()
            .and_then(|confirmed| *confirmed)
            .is_some_and(|began| began.elapsed() < CONFIRMATION_COVERS);
        if recent {
            return Ok(());
        }
        self.confirm(elb).await
    }

    /// Pushes the expiry out by the TTL (for long gradual shifts), after
    /// confirming the lock is still ours: a lock taken away by a colleague's
    /// `--force-unlock` is never written back.
    pub async fn refresh(&mut self, elb: &Elb) -> anyhow::Result<()> {
        self.confirm(elb).await?;
        self.tag.until = OffsetDateTime::now_utc() + self.ttl;
        elb.add_tags(&self.listener_arn, &[(&self.tag.key, &self.tag.value())])
            .await?;
        self.written = Instant::now();
        Ok(())
    }

    /// The holders whose locks `--force-unlock` removed (the `lock.forced` event).
    pub fn forced_holders(&self) -> &[String] {
        &self.forced_holders
    }

    /// Whether the expiry is near enough to refresh.
    pub fn needs_refresh(&self) -> bool {
        self.tag.until - OffsetDateTime::now_utc() < self.ttl / 2
    }

    /// Removes our tag and any dead ones seen while acquiring (one call).
    pub async fn release(self, elb: &Elb) -> anyhow::Result<()> {
        let mut keys = self.stale;
        keys.push(self.tag.key);
        elb.remove_tags(&self.listener_arn, &keys).await
    }
}

fn serialize_time<S: serde::Serializer>(
    at: &OffsetDateTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&rfc3339(*at))
}

fn rfc3339_millis(at: OffsetDateTime) -> String {
    let millis = at.nanosecond() / 1_000_000 * 1_000_000;
    at.replace_nanosecond(millis)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

/// This process as a lock holder: `user@host pid N`, in tag-safe characters.
pub fn this_process() -> String {
    format!("{} pid {}", tag_safe(&operator_name()), std::process::id())
}

/// Whether process `pid` exists (signal 0; EPERM means it does, as another
/// user's). A pid that is not positive names no one process: as with an
/// unparseable holder, the lock is not presumed dead.
fn process_exists(pid: i32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid.max(0)) else {
        return true;
    };
    rustix::process::test_kill_process(pid) != Err(rustix::io::Errno::SRCH)
}

#[cfg(test)]
mod process_exists_tests {
    use super::process_exists;

    #[test]
    fn this_process_exists_a_reaped_one_does_not_and_no_pid_is_not_presumed_dead() {
        let this = i32::try_from(std::process::id()).unwrap();
        assert!(process_exists(this));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let reaped = i32::try_from(child.id()).unwrap();
        child.wait().unwrap();
        assert!(!process_exists(reaped));
        assert!(process_exists(0));
        assert!(process_exists(-1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_live_lock_wins_and_dead_ones_are_ignored() {
        let now = OffsetDateTime::now_utc();
        let minute = Duration::from_secs(60);
        let tag = |key: &str, holder: &str, since: OffsetDateTime, until: OffsetDateTime| {
            let t = LockTag {
                key: key.into(),
                holder: holder.into(),
                since,
                until,
            };
            (t.key.clone(), t.value())
        };
        let tags: BTreeMap<String, String> = [
            tag(
                "ficus:lock:a",
                "ann@elsewhere pid 1",
                now - minute,
                now + minute,
            ),
            tag(
                "ficus:lock:b",
                "bob@elsewhere pid 2",
                now - minute * 2,
                now - minute,
            ),
            tag("ficus:lock:c", "cy@elsewhere pid 3", now, now + minute),
            ("Name".into(), "not a lock".into()),
        ]
        .into_iter()
        .collect();
        let winner = holder(&tags, now).unwrap();
        assert_eq!(winner.holder, "ann@elsewhere pid 1");
        assert_eq!(lock_tags(&tags).len(), 3);
    }

    #[test]
    fn a_lock_of_a_gone_local_process_is_dead() {
        let now = OffsetDateTime::now_utc();
        let me = this_process();
        let alive = LockTag {
            key: "k".into(),
            holder: me,
            since: now,
            until: now + Duration::from_secs(60),
        };
        assert!(!alive.is_dead(now));
        let gone = LockTag {
            holder: format!("{} pid {}", tag_safe(&operator_name()), i32::MAX),
            ..alive.clone()
        };
        assert!(gone.is_dead(now));
        let parsed = LockTag::parse("k", &alive.value()).unwrap();
        assert_eq!(parsed.holder, alive.holder);
    }
}
