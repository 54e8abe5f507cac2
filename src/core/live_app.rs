//! An app's settings that a reload can change while its hub lives on.
//!
//! Every read of a setting (`hub.app.max_connections`, the secret when a
//! signature is checked) goes through [`LiveApp`]'s `Deref`: one atomic
//! load, no lock, never a wait on a reload. A reload publishes a whole new
//! [`AppConfig`] at once, so a reader sees either the old settings or the
//! new ones, never a mix; work that started before keeps what it read,
//! new work gets the new settings ("a changed limit applies to new work").
//!
//! Each published version stays allocated until the hub is dropped, which
//! is what lets `Deref` hand out a plain `&AppConfig` tied to the hub's
//! lifetime. That is a few hundred bytes per *change* of this app (not per
//! reload: unchanged apps are not republished), freed with the hub.

use std::ops::Deref;
use std::sync::atomic::{AtomicPtr, Ordering};

use parking_lot::Mutex;

use super::app::AppConfig;

/// The current settings of one app, replaceable at run time.
pub struct LiveApp {
    /// Points into one of the boxes in `versions`.
    current: AtomicPtr<AppConfig>,
    /// Every version ever published; only appended to while `self` lives.
    /// Boxed on purpose: the pointer in `current` must survive the vector
    /// growing.
    #[allow(clippy::vec_box)]
    versions: Mutex<Vec<Box<AppConfig>>>,
}

impl LiveApp {
    pub fn new(app: AppConfig) -> Self {
        let mut first = Box::new(app);
        let current = AtomicPtr::new(&mut *first as *mut AppConfig);
        LiveApp {
            current,
            versions: Mutex::new(vec![first]),
        }
    }

    /// Publishes `app` as the current settings; readers see it from their
    /// next access on.
    pub fn store(&self, app: AppConfig) {
        let mut boxed = Box::new(app);
        let ptr = &mut *boxed as *mut AppConfig;
        let mut versions = self.versions.lock();
        // The box's heap slot never moves, even when the vector grows.
        versions.push(boxed);
        self.current.store(ptr, Ordering::Release);
    }

    /// How many versions were published (1 until the first change).
    pub fn versions(&self) -> usize {
        self.versions.lock().len()
    }
}

impl Deref for LiveApp {
    type Target = AppConfig;

    #[inline]
    fn deref(&self) -> &AppConfig {
        // SAFETY: `current` always points into a box owned by `versions`,
        // which is append-only while `self` lives; boxes are never freed
        // or moved before `self` is dropped, so the reference is valid for
        // as long as the borrow of `self`. `AppConfig` is only ever read
        // through it (published values are never mutated).
        unsafe { &*self.current.load(Ordering::Acquire) }
    }
}

impl std::fmt::Debug for LiveApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_the_new_version_and_old_borrows_stay_valid() {
        let live = LiveApp::new(AppConfig::default());
        let before: &AppConfig = &live;
        assert_eq!(before.max_connections, 0);
        live.store(AppConfig {
            max_connections: 5,
            ..AppConfig::default()
        });
        // The borrow taken before the change still reads the old version.
        assert_eq!(before.max_connections, 0);
        assert_eq!(live.max_connections, 5);
        assert_eq!(live.versions(), 2);
    }

    #[test]
    fn concurrent_readers_never_see_a_torn_value() {
        let live = std::sync::Arc::new(LiveApp::new(AppConfig::default()));
        let reader = {
            let live = live.clone();
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    let app: &AppConfig = &live;
                    // Every published version keeps key and secret paired.
                    let first = app.key == "resonance-key" && app.secret == "resonance-secret";
                    assert!(first || app.secret == format!("secret-of-{}", app.key));
                }
            })
        };
        for i in 0..200 {
            live.store(AppConfig {
                key: format!("k{i}"),
                secret: format!("secret-of-k{i}"),
                ..AppConfig::default()
            });
        }
        reader.join().expect("reader");
    }
}
